"""py_hostcall_probe: the Rust hostcall_probe's gated scenarios as a component, so the
host-call conformance tests run the same assertions over both ABIs.

Driven by the request header `x-probe: <scenario>`; answers `key=value` lines exactly as
the Rust probe documents (guest-examples/rust/hostcall_probe/src/lib.rs): `kv`,
`kv_big`, `queue`, `timers`, `metrics`, `callout`, `callout_flood`, `denied_calls`.
Statuses are raw proxy_status_t numbers (the WIT status enum has the same order). It
calls the `host` interface directly (not the SDK's friendlier wrappers) to see every
status. What the WIT world cannot express is left out: a metric type outside the enum
(`bad_type_status`).
"""

import re

import routeiq_guest as rg
from routeiq_guest._bindings import BufferType, Err, MapType, MetricType, from_wire, host, to_wire


def code(fn):
    """0 if the call succeeded, else its status number."""
    try:
        fn()
        return 0
    except Err as err:
        return err.value.value


def result(fn):
    """(0, value) or (status, None)."""
    try:
        return 0, fn()
    except Err as err:
        return err.value.value, None


class Lines:
    def __init__(self):
        self.out = []

    def kv(self, key, value):
        self.out.append(f"{key}={value}")

    def status(self, key, status):
        self.out.append(f"{key}!status={status}")

    def bytes_result(self, key, answer):
        status, value = answer
        if status:
            self.status(key, status)
        else:
            self.kv(key, from_wire(value).decode("utf-8", "replace"))

    def value(self, key, answer):
        """A get-shared-data answer: the value, or its status (absent: not-found, 1)."""
        status, entry = answer
        if status or entry.value is None:
            self.status(key, status or 1)
        else:
            self.kv(key, from_wire(entry.value).decode())

    def text(self):
        return "".join(line + "\n" for line in self.out)


def respond(lines):
    host.send_local_response(200, "probe", to_wire(lines.text().encode()), [("content-type", "text/plain")])
    return rg.PAUSE


def header(name):
    status, value = result(lambda: host.get_header(MapType.REQUEST_HEADERS, name))
    return None if status else from_wire(value).decode("utf-8", "replace")


def header_num(name, default):
    value = header(name)
    return int(value) if value and value.isdigit() else default


def call_headers(upstream, method, path, scheme):
    return [(":method", method), (":path", path), (":authority", upstream), (":scheme", scheme)]


class Probe(rg.Plugin):
    """The root context: ticks drive a queue that on_queue_ready drains."""

    ticks = 0
    queue_ready_items = 0
    probe_q = None

    def on_configure(self, config):
        found = re.search(rb'"tick_ms":\s*(\d+)', config)
        if found:
            ms = int(found.group(1))
            rg.log.info(f"probe tick_ms={ms} status={code(lambda: host.set_tick_period(ms))}")
        return True

    def on_tick(self):
        Probe.ticks += 1
        if Probe.ticks == 1:
            status, qid = result(lambda: host.register_shared_queue("ticks"))
            if status:
                rg.log.info(f"probe ticks register_status={status}")
            else:
                rg.log.info(f"probe ticks queue={qid} enqueue_status={code(lambda: host.enqueue_shared_queue(qid, 'tick'))}")

    def on_queue_ready(self, queue_id):
        if queue_id == Probe.probe_q:
            return
        n = 0
        while result(lambda: host.dequeue_shared_queue(queue_id))[0] == 0:
            n += 1
        Probe.queue_ready_items += n


class HostcallProbe(rg.HttpFilter):
    scenario = ""
    call_id = None

    def on_request_headers(self, headers, end_of_stream):
        self.scenario = header("x-probe") or ""
        run = getattr(self, "scenario_" + self.scenario, None)
        return run() if run is not None else rg.CONTINUE

    # ------------------------------------------------------------ shared data
    def scenario_kv(self):
        lines = Lines()
        key = "probe:k"
        status, entry = result(lambda: host.get_shared_data(key))
        if status:
            lines.kv("get_missing_status", status)
            lines.kv("create_cas_nonzero", 0)
        else:
            lines.kv("get_missing_status", 1 if entry.value is None else 0)
            lines.kv("create_cas_nonzero", int(entry.cas != 0))
        v1 = header("x-kv-value") or "v1"
        lines.kv("set_status", code(lambda: host.set_shared_data(key, v1, 0)))
        status, entry = result(lambda: host.get_shared_data(key))
        cas = 0
        if status or entry.value is None:
            lines.status("value", status or 1)
            lines.status("cas", status or 1)
        else:
            lines.kv("value", from_wire(entry.value).decode())
            lines.kv("cas", entry.cas)
            cas = entry.cas
        lines.kv("cas_mismatch_status", code(lambda: host.set_shared_data(key, "wrong", (cas + 1) & 0xFFFFFFFF)))
        lines.kv("cas_set_status", code(lambda: host.set_shared_data(key, "v2", cas)))
        lines.value("value2", result(lambda: host.get_shared_data(key)))
        other = header("x-kv-key")
        if other is not None:
            lines.value("other", result(lambda: host.get_shared_data(other)))
        put = header("x-kv-put")
        if put is not None:
            k, _, v = put.partition("=")
            lines.kv("put_status", code(lambda: host.set_shared_data(k, v, 0)))
        return respond(lines)

    def scenario_kv_big(self):
        lines = Lines()
        key = "a" * header_num("x-key-len", 10)
        value = "a" * header_num("x-value-len", 10)
        lines.kv("status", code(lambda: host.set_shared_data(key, value, 0)))
        return respond(lines)

    # ----------------------------------------------------------------- queues
    def scenario_queue(self):
        lines = Lines()
        status, qid = result(lambda: host.register_shared_queue("probe_q"))
        lines.kv("register_status", status)
        if not status:
            lines.kv("queue_id", qid)
            Probe.probe_q = qid
        qid = qid or 0
        e1 = code(lambda: host.enqueue_shared_queue(qid, "m1"))
        e2 = code(lambda: host.enqueue_shared_queue(qid, "m2"))
        lines.kv("enqueue_status", e1 or e2)
        lines.bytes_result("first", result(lambda: host.dequeue_shared_queue(qid)))
        lines.bytes_result("second", result(lambda: host.dequeue_shared_queue(qid)))
        lines.kv("empty_status", code(lambda: host.dequeue_shared_queue(qid)))
        vm_id = header("x-vm-id") or "probe"
        status, resolved = result(lambda: host.resolve_shared_queue(vm_id, "probe_q"))
        lines.kv("resolve_status", status)
        if not status:
            lines.kv("resolved_id", resolved)
        lines.kv("missing_status", code(lambda: host.resolve_shared_queue("probe", "nope")))
        lines.kv("bad_queue_status", code(lambda: host.enqueue_shared_queue(999_999, "x")))
        return respond(lines)

    def scenario_timers(self):
        lines = Lines()
        lines.kv("ticks", Probe.ticks)
        lines.kv("queue_ready_items", Probe.queue_ready_items)
        return respond(lines)

    # ---------------------------------------------------------------- metrics
    def scenario_metrics(self):
        lines = Lines()
        status, mid = result(lambda: host.define_metric(MetricType.COUNTER, "probe_requests"))
        lines.kv("define_status", status)
        if not status:
            lines.kv("metric_id", mid)
        mid = mid or 0
        lines.kv("inc_status", code(lambda: host.increment_metric(mid, 2)))
        status, value = result(lambda: host.get_metric(mid))
        lines.status("value", status) if status else lines.kv("value", value)
        lines.kv("negative_status", code(lambda: host.increment_metric(mid, -1)))

        def gauge():
            gid = host.define_metric(MetricType.GAUGE, "probe_gauge")
            host.record_metric(gid, 42)
            return host.get_metric(gid)

        status, value = result(gauge)
        lines.status("gauge", status) if status else lines.kv("gauge", value)
        lines.kv("hist_status", code(lambda: host.record_metric(host.define_metric(MetricType.HISTOGRAM, "probe_hist"), 5)))
        return respond(lines)

    # --------------------------------------------------------------- callouts
    def _call(self, upstream, headers, body, timeout):
        return result(lambda: host.http_call(upstream, headers, body, [], timeout))

    def scenario_callout(self):
        upstream = header("x-upstream") or "127.0.0.1:1"
        headers = call_headers(upstream, header("x-method") or "GET", header("x-path") or "/", header("x-scheme") or "http")
        status, call_id = self._call(upstream, headers, header("x-call-body") or "", header_num("x-timeout-ms", 1000))
        if status:
            lines = Lines()
            lines.kv("call_status", status)
            return respond(lines)
        self.call_id = call_id
        return rg.PAUSE

    def on_http_call_response(self, response):
        if self.scenario != "callout" or response.call_id != self.call_id:
            return
        self.call_id = None
        lines = Lines()
        lines.kv("call_status", 0)
        lines.kv("num_headers", len(response.headers))
        lines.bytes_result("status", result(lambda: host.get_header(MapType.HTTP_CALL_RESPONSE_HEADERS, ":status")))
        if response.body:
            lines.bytes_result("body", result(lambda: host.get_buffer(BufferType.HTTP_CALL_RESPONSE_BODY, 0, len(response.body))))
        else:
            lines.kv("body", "")
        lines.bytes_result("x-echo", result(lambda: host.get_header(MapType.HTTP_CALL_RESPONSE_HEADERS, "x-echo")))
        status, answer = result(host.get_call_status)
        lines.status("get_status", status) if status else lines.kv("get_status", answer.code)
        respond(lines)

    def scenario_callout_flood(self):
        upstream = header("x-upstream") or "127.0.0.1:1"
        headers = call_headers(upstream, "GET", "/", "http")
        timeout = header_num("x-timeout-ms", 1000)
        ok = refused = 0
        first_refused = None
        for _ in range(header_num("x-count", 10)):
            status, _ = self._call(upstream, headers, "", timeout)
            if status:
                refused += 1
                first_refused = first_refused or status
            else:
                ok += 1
        lines = Lines()
        lines.kv("ok", ok)
        lines.kv("refused", refused)
        lines.kv("first_refused_status", first_refused or 0)
        return respond(lines)

    # ---------------------------------------------------------------- denials
    def scenario_denied_calls(self):
        lines = Lines()
        upstream = "127.0.0.1:1"
        lines.kv("proxy_http_call", self._call(upstream, call_headers(upstream, "GET", "/", "http"), "", 1000)[0])
        lines.kv("proxy_get_shared_data", code(lambda: host.get_shared_data("x")))
        lines.kv("proxy_set_shared_data", code(lambda: host.set_shared_data("probe:denied", "1", 0)))
        lines.kv("proxy_register_shared_queue", code(lambda: host.register_shared_queue("probe_denied")))
        lines.kv("proxy_resolve_shared_queue", code(lambda: host.resolve_shared_queue("probe", "q")))
        lines.kv("proxy_enqueue_shared_queue", code(lambda: host.enqueue_shared_queue(1, "x")))
        lines.kv("proxy_dequeue_shared_queue", code(lambda: host.dequeue_shared_queue(1)))
        lines.kv("proxy_define_metric", code(lambda: host.define_metric(MetricType.COUNTER, "probe_denied")))
        lines.kv("proxy_increment_metric", code(lambda: host.increment_metric(1, 1)))
        lines.kv("proxy_record_metric", code(lambda: host.record_metric(1, 1)))
        lines.kv("proxy_get_metric", code(lambda: host.get_metric(1)))
        tick = code(lambda: host.set_tick_period(1000))
        code(lambda: host.set_tick_period(0))
        lines.kv("proxy_set_tick_period_milliseconds", tick)
        lines.kv("request_body_read", code(lambda: host.get_buffer(BufferType.REQUEST_BODY, 0, 10)))
        lines.kv("response_body_read", code(lambda: host.get_buffer(BufferType.RESPONSE_BODY, 0, 10)))
        return respond(lines)

    def on_log(self):
        status, path = result(lambda: host.get_property(["request", "path"]))
        rg.log.info(f"probe on_log path={'!status=' + str(status) if status else from_wire(path).decode()}")
