"""py_rate_limiter: a fixed-window request limit per API key, counted in shared data
with compare-and-swap (the Rust rate_limiter in Python).

* The client is the request header `header` (default `x-api-key`; `anonymous` without
  it). The counter key is `<key_prefix>:<api key>:<now_s // window_s>`.
* CAS loop (at most 32 attempts): read (value, cas); at `limit` the request is refused,
  else write count + 1 with that cas (a missing key's cas is a create token, so two
  concurrent creators cannot both win). A CAS mismatch retries.
* Refused: local 429, `retry-after: <seconds left in the window>`,
  `x-ratelimit-limit`, `x-ratelimit-remaining: 0`, JSON body
  `{"error":{"message":"rate limit exceeded","type":"rate_limit_exceeded"}}`.
* Counted: the response gets `x-ratelimit-limit` and `x-ratelimit-remaining`.
* 32 mismatches in a row: local 503 (`rate_limiter_contention`).
* Shared data unavailable (not granted, store down): WARN and the request goes on.

Needs the `shared_kv` capability.
Config: {"limit": 10, "window_s": 60, "header": "x-api-key", "key_prefix": "rl"}
"""

import routeiq_guest as rg

LIMITED = {"error": {"message": "rate limit exceeded", "type": "rate_limit_exceeded"}}
CONTENTION = {"error": {"message": "rate limiter contention", "type": "rate_limit_error"}}
MAX_ATTEMPTS = 32


class Limits(rg.Plugin):
    def on_configure(self, config):
        super().on_configure(config)
        c = self.config
        self.limit = c["limit"] if isinstance(c.get("limit"), int) and c["limit"] >= 0 else 10
        self.window_s = c["window_s"] if isinstance(c.get("window_s"), int) and c["window_s"] >= 1 else 60
        header = c.get("header")
        self.header = header.lower() if isinstance(header, str) and header else "x-api-key"
        prefix = c.get("key_prefix")
        self.key_prefix = prefix if isinstance(prefix, str) else "rl"
        rg.log.debug(f"py_rate_limiter: limit={self.limit} window_s={self.window_s} header={self.header} key_prefix={self.key_prefix}")
        return True


class Limiter(rg.HttpFilter):
    remaining = None

    def on_request_headers(self, headers, end_of_stream):
        p = self.plugin
        api_key = headers.get(p.header) or "anonymous"
        now_s = rg.now_ns() // 1_000_000_000
        window = now_s // p.window_s
        retry_after = p.window_s - now_s % p.window_s
        key = f"{p.key_prefix}:{api_key}:{window}"
        for _ in range(MAX_ATTEMPTS):
            try:
                value, cas = rg.kv.get(key)
                count = int(value) if value and value.strip().isdigit() else 0
                if count >= p.limit:
                    return self.respond(
                        429,
                        LIMITED,
                        [("retry-after", str(retry_after)), ("x-ratelimit-limit", str(p.limit)), ("x-ratelimit-remaining", "0")],
                        details="rate_limit_exceeded",
                    )
                rg.kv.set(key, str(count + 1), cas)
            except rg.CasMismatch:
                continue
            except rg.HostError as err:
                rg.log.warn(f"py_rate_limiter: shared data unavailable (status {err.code})")
                return rg.CONTINUE
            self.remaining = p.limit - count - 1
            return rg.CONTINUE
        return self.respond(503, CONTENTION, details="rate_limiter_contention")

    def on_response_headers(self, headers, end_of_stream):
        if self.remaining is not None:
            headers.add("x-ratelimit-limit", str(self.plugin.limit))
            headers.add("x-ratelimit-remaining", str(self.remaining))
