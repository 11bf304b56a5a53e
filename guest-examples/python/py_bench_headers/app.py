"""py_bench_headers: the benchmark's request-headers hook (as guest-examples/rust/
bench_headers): read `x-api-key`, add `x-routeiq-seen: 1` (or `anonymous` without it)."""

import routeiq_guest as rg


class Hook(rg.HttpFilter):
    def on_request_headers(self, headers, end_of_stream):
        seen = "1" if headers.get_bytes("x-api-key") is not None else "anonymous"
        headers.add("x-routeiq-seen", seen)
        return rg.CONTINUE
