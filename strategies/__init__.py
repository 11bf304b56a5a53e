"""Native routing strategies.

Interface: `base` (RoutingStrategy, Deployment, Decision, ...). Registry of built-ins and the
gateway-owned `StrategyRegistry`: `registry`. Baselines: weighted_round_robin, least_latency,
cheapest, cost_capped_quality. Learned (numpy, query-text features): knn,
matrix_factorization, bradley_terry, contextual_bandit. Also `artifacts` (sha256-checked
saved state), `custom` (custom_routers/ loading) and `evaluation` (`routeiq route-eval`).
"""
