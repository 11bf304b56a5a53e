"""py_probe: calls gated host functions and reports each outcome as a request header
(`x-probe-<call>: ok` or the status name), for the capability tests. No manifest: it
asks for nothing at load time, so whatever it calls beyond its grant is refused at run
time with a status (never a trap) and audited. It also reports the WASI clock and
randomness (`x-probe-time`, `x-probe-random`) and prints a line (to the plugin log)."""

import random
import time

import routeiq_guest as rg


def attempt(fn):
    try:
        fn()
        return "ok"
    except rg.HostError as err:
        return err.status.name.lower().replace("_", "-")


class Probe(rg.HttpFilter):
    def on_request_headers(self, headers, end_of_stream):
        results = {
            "kv-get": attempt(lambda: rg.kv.get("probe")),
            "kv-set": attempt(lambda: rg.kv.set("probe", b"1")),
            "metric": attempt(lambda: rg.metrics.counter("probes").increment()),
            "llm": attempt(lambda: rg.llm.request()),
            "tick": attempt(lambda: rg.set_tick_period(0)),
            "callout": attempt(lambda: rg.http_call("127.0.0.1:9", path="/probe")),
        }
        for name, outcome in results.items():
            headers.add(f"x-probe-{name}", outcome)
        # WASI without grants still gives the clock and randomness; print() is logged.
        headers.add("x-probe-time", str(int(time.time())))
        headers.add("x-probe-random", str(random.random()))
        print("py_probe: probed")
        return rg.CONTINUE
