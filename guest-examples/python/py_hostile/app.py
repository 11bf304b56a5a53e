"""py_hostile: a misbehaving guest for the sandbox tests. It behaves only on requests
without `x-hostile`; with it, on_request_headers does what config `mode` says:

* `loop` (default): spins forever (fuel or the deadline stops it);
* `memory`: allocates 1 MiB blocks until the memory limit;
* `raise`: raises an exception.

No manifest: it needs no capability.
"""

import routeiq_guest as rg


class Hostile(rg.HttpFilter):
    def on_request_headers(self, headers, end_of_stream):
        if "x-hostile" not in headers:
            headers.add("x-routeiq-hostile", "calm")
            return rg.CONTINUE
        mode = self.config.get("mode", "loop")
        if mode == "memory":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        if mode == "raise":
            raise ValueError("py_hostile was asked to fail")
        n = 0
        while True:
            n += 1
