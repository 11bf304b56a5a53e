"""py_redactor: mask secrets in request bodies before the model sees them (the Rust
redactor in Python).

* on_request_body: returns PAUSE until end_of_stream (the host buffers the body), then
  masks e-mail addresses -> `[REDACTED_EMAIL]` and `sk-...` / `AKIA...` keys ->
  `[REDACTED_KEY]`. A JSON body is parsed and every string (keys and values) is masked,
  then written back as compact JSON; any other body is masked as plain text. The body is
  rewritten only if something was masked (the host fixes content-length).
* on_response_headers: `x-routeiq-redactions: <count>`.

Needs the `request_body` capability. Config: none.
"""

import json
import re

import routeiq_guest as rg

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}")
KEY = re.compile(r"(?<![A-Za-z0-9_-])(?:sk-[A-Za-z0-9_-]{16,}|AKIA[A-Z0-9]{16,})")


def mask(text):
    text, emails = EMAIL.subn("[REDACTED_EMAIL]", text)
    text, keys = KEY.subn("[REDACTED_KEY]", text)
    return text, emails + keys


def mask_json(value):
    """(masked value, count) for any JSON value."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, list):
        total, out = 0, []
        for item in value:
            item, n = mask_json(item)
            out.append(item)
            total += n
        return out, total
    if isinstance(value, dict):
        total, out = 0, {}
        for key, item in value.items():
            key, n1 = mask(key)
            item, n2 = mask_json(item)
            out[key] = item
            total += n1 + n2
        return out, total
    return value, 0


class Redactor(rg.HttpFilter):
    redactions = 0

    def on_request_body(self, body, end_of_stream):
        if not end_of_stream:
            return rg.PAUSE  # buffer until the whole body is here
        if body.size == 0:
            return rg.CONTINUE
        raw = body.read()
        try:
            document = json.loads(raw)
        except ValueError:
            text, count = mask(raw.decode("utf-8", "surrogateescape"))
            new = text.encode("utf-8", "surrogateescape")
        else:
            document, count = mask_json(document)
            new = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        if count:
            body.replace(new)
            self.redactions += count
            rg.log.debug(f"py_redactor: redactions={count} bytes_in={len(raw)} bytes_out={len(new)}")
        return rg.CONTINUE

    def on_response_headers(self, headers, end_of_stream):
        headers.add("x-routeiq-redactions", str(self.redactions))
