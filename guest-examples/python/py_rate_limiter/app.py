"""py_rate_limiter: a fixed-window request limit per consumer, counted in shared data
with compare-and-swap (the Rust rate_limiter in Python).

* Who is counted (first match wins): `consumer:<id>` from property
  `routeiq.consumer.id` (the virtual key the gateway authenticated; headers never
  override it, so changing `x-api-key` does not escape the quota); `header:<value>` only
  when the config names a `header` (opt-in and SPOOFABLE: the client picks the value);
  `addr:<ip>` from `source.address` without its port; else one shared `anonymous` bucket.
  The counter key is `<key_prefix>:<who>:<now_s // window_s>`; a `<who>` over 64 bytes
  becomes `fp:<FNV-1a 64 hex>`, so a long header cannot push the key past the host's
  key-size limit (which would make the limiter fail open).
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
Config: {"limit": 10, "window_s": 60, "header": null, "key_prefix": "rl"}
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
        # Opt-in, spoofable: a client-chosen header only counts without a consumer.
        self.header = header.lower() if isinstance(header, str) and header else None
        prefix = c.get("key_prefix")
        self.key_prefix = prefix if isinstance(prefix, str) else "rl"
        rg.log.debug(f"py_rate_limiter: limit={self.limit} window_s={self.window_s} header={self.header or '-'} key_prefix={self.key_prefix}")
        return True


def client_of(headers, header):
    """Who this request is counted against; see the module docstring for the order."""
    consumer = rg.get_property("routeiq.consumer.id")
    if consumer:
        return "consumer:" + consumer.decode("utf-8", "replace")
    value = headers.get(header) if header else None
    if value:
        return "header:" + value
    address = rg.get_property("source.address")
    if address:
        # "ip:port": the port changes per connection, the client does not.
        host, sep, _ = address.decode("utf-8", "replace").rpartition(":")
        return "addr:" + (host if sep else address.decode("utf-8", "replace"))
    return "anonymous"


def bounded(who):
    """`who`, or its FNV-1a 64 fingerprint when longer than 64 bytes."""
    data = who.encode("utf-8", "replace")
    if len(data) <= 64:
        return who
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"fp:{h:016x}"


class Limiter(rg.HttpFilter):
    remaining = None

    def on_request_headers(self, headers, end_of_stream):
        p = self.plugin
        client = bounded(client_of(headers, p.header))
        now_s = rg.now_ns() // 1_000_000_000
        window = now_s // p.window_s
        retry_after = p.window_s - now_s % p.window_s
        key = f"{p.key_prefix}:{client}:{window}"
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
