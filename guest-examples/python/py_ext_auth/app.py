"""py_ext_auth: external authorization through an HTTP callout (a small version of the
Rust ext_auth).

* on_request_headers: drops a client-supplied `x-auth-user`, asks the auth service
  (`GET <path>` on `upstream`, forwarding the `authorization` header) and returns PAUSE.
* on_http_call_response: status 200 -> the request gets `x-auth-user` from the answer
  and goes on; any other status -> local 401 (JSON body, `www-authenticate: Bearer`).
  A failed or timed-out call leaves the request paused: the plugin's fail_open decides.

Needs `http_callout` and a callout rule for `upstream` in the policy.
Config: {"upstream": "127.0.0.1:9101", "path": "/check", "timeout_ms": 500}
"""

import routeiq_guest as rg

UNAUTHORIZED = {"error": {"message": "unauthorized", "type": "authentication_error"}}


class Auth(rg.Plugin):
    def on_configure(self, config):
        super().on_configure(config)
        if not self.config.get("upstream"):
            rg.log.error('py_ext_auth: "upstream" is required in the plugin configuration')
            return False
        return True


class ExtAuth(rg.HttpFilter):
    def on_request_headers(self, headers, end_of_stream):
        headers.remove("x-auth-user")
        c = self.config
        self.call_id = rg.http_call(
            c["upstream"],
            path=c.get("path", "/check"),
            headers=[("authorization", headers.get("authorization", ""))],
            timeout_ms=int(c.get("timeout_ms", 500)),
        )
        return rg.PAUSE

    def on_http_call_response(self, response):
        rg.log.info(f"py_ext_auth: status={response.status} body_bytes={len(response.body)}")
        if not response.ok:
            rg.log.warn("py_ext_auth: auth call failed")
            return
        if response.status == 200:
            user = response.header("x-auth-user")
            if user:
                self.request_headers.add("x-auth-user", user)
            self.resume_request()
        else:
            self.respond(401, UNAUTHORIZED, [("www-authenticate", "Bearer")], details="unauthorized")
