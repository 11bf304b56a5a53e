"""py_tagger: tag requests with a header, answer 403 to denied ones (the Rust tagger in
Python).

* on_request_headers: a request carrying the header `deny_header` (default `x-block`),
  or whose path starts with one of `deny_paths`, is answered locally: 403,
  `content-type: application/json`, body
  `{"error":{"message":"blocked by py_tagger","type":"forbidden"}}`. Any other request
  gets `x-routeiq-tagged: <tag>` (default `routeiq`).
* on_response_headers: adds `x-routeiq-plugin: py_tagger`.

Config: {"tag": "demo", "deny_header": "x-block", "deny_paths": ["/admin"]}
"""

import routeiq_guest as rg

DENIED = {"error": {"message": "blocked by py_tagger", "type": "forbidden"}}


class Tagger(rg.HttpFilter):
    def on_request_headers(self, headers, end_of_stream):
        config = self.config
        deny_header = str(config.get("deny_header", "x-block")).lower()
        path = headers.get(":path", "")
        if (deny_header and deny_header in headers) or any(path.startswith(p) for p in config.get("deny_paths", [])):
            return self.respond(403, DENIED, details="blocked by py_tagger")
        headers.add("x-routeiq-tagged", str(config.get("tag", "routeiq")))
        return rg.CONTINUE

    def on_response_headers(self, headers, end_of_stream):
        headers.add("x-routeiq-plugin", "py_tagger")
