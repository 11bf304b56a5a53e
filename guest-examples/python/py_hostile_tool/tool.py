"""py_hostile_tool: a Python MCP tool that misbehaves on request (sandbox tests).

Input `{"mode": ...}`: `"loop"` never returns (fuel or the deadline must stop it),
`"raise"` raises an uncaught exception (a trap: the VM is replaced), `"memory"` grows a
list until the memory limit stops it, `"kv"` writes shared data without `shared_kv`
(answers `{"status": "<the status the host answered>"}`), anything else answers
`{"status": "ok"}` (the tool still serves after a hostile call). Capabilities: none.
"""

import routeiq_tool as rt


def call(arguments: dict) -> dict:
    mode = arguments["mode"]
    if mode == "loop":
        n = 0
        while True:
            n += 1
    if mode == "raise":
        raise ValueError("py_hostile_tool was asked to raise")
    if mode == "memory":
        hoard = []
        while True:
            hoard.append(bytearray(1024 * 1024))
    if mode == "kv":
        try:
            rt.kv_set("taken", b"1")
        except rt.HostError as error:
            return {"status": str(error).split(": ")[-1]}
        return {"status": "ok"}
    return {"status": "ok"}
