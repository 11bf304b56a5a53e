"""The LLM path: deployments, routing with native strategies, backends, circuit breakers."""
