"""Issue #7's targets, in one place: the reports and the README headline judge by these."""

RUST_HEADERS_HOOK_US = 5.0  # Rust guest request-headers hook, median
EXTISM_RATIO = 5.0  # Rust guest at least this much faster than Extism on the same hook
PYTHON_HOOK_US = 150.0  # Python component, every hook, median
ADDED_P50_MS = 2.0  # 3 Wasm plugins over calling the upstream directly
LITELLM_RPS_RATIO = 2.0  # 3 Wasm plugins against the LiteLLM proxy, same cores
KEY_AUTH_US = 100.0  # issue #16: a request with a virtual key (cached lookup) over one without, median
