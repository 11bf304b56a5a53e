"""py_bench_filter: the hook-matrix benchmark filter (guest-examples/rust/bench_filter) in
Python. Same logic in every language, so bench/test_hook_matrix.py compares hosts, not
filters:

* on_request_headers: reads `x-api-key`, adds `x-routeiq-seen: 1` (`anonymous` without it).
* on_request_body: PAUSE until end_of_stream; then reads the whole body, replaces every
  `secret` with `******`, writes the whole body back.
* on_response_body: reads each chunk, adds its length to a per-request counter;
  on_response_trailers reports it as trailer `x-routeiq-body-bytes: <n>`.
* on_response_headers: `bench-counter` in shared data += 1 (decimal text, CAS).
* on_log: one HTTP callout to 127.0.0.1:1, refusal ignored (the benchmark grants no
  `http_callout`: it measures the host's refusal).

Needs `request_body`, `response_body` and `shared_kv`. Config: none.
"""

import routeiq_guest as rg

COUNTER_KEY = "bench-counter"
CALLOUT_UPSTREAM = "127.0.0.1:1"


class BenchFilter(rg.HttpFilter):
    def __init__(self):
        self.response_bytes = 0

    def on_request_headers(self, headers, end_of_stream):
        headers.add("x-routeiq-seen", "1" if headers.get_bytes("x-api-key") is not None else "anonymous")
        return rg.CONTINUE

    def on_request_body(self, body, end_of_stream):
        if not end_of_stream:
            return rg.PAUSE  # the host buffers until the whole body is there
        body.replace(body.read().replace(b"secret", b"******"))
        return rg.CONTINUE

    def on_response_headers(self, headers, end_of_stream):
        value, cas = rg.kv.get(COUNTER_KEY)  # a missing key's cas is a create token
        count = int(value) if value and value.isdigit() else 0
        rg.kv.set(COUNTER_KEY, str(count + 1), cas)
        return rg.CONTINUE

    def on_response_body(self, body, end_of_stream):
        if body.size:
            self.response_bytes += len(body.read())
        return rg.CONTINUE

    def on_response_trailers(self, trailers):
        trailers.add("x-routeiq-body-bytes", str(self.response_bytes))
        return rg.CONTINUE

    def on_log(self):
        try:
            rg.http_call(CALLOUT_UPSTREAM, "GET", "/")
        except rg.HostError:
            pass  # refused without the http_callout grant; the host audited it
