"""The operator console at /ui: login, logout, the server-rendered pages and the JSON the
pages poll for live updates.

Every change an operator makes from a page goes to the admin API itself (/admin/...,
/key/...) with the session cookie and the CSRF token, so roles, validation and refusals
are the API's, checked on the server; the pages only hide controls a role cannot use."""

from __future__ import annotations

import datetime as dt
import hmac
import json
import secrets
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence
from urllib.parse import parse_qs, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from routeiq.admin.auth import AdminKey, allows, authenticate
from routeiq.admin.sessions import SESSION_COOKIE, ConsoleSessions, Session
from routeiq.config import ConsoleConfig
from routeiq.gateway.routing import PrefixedRoutes

from . import views
from .views import ConsoleSources

HERE = Path(__file__).parent
PREFIX = "/ui"
LOGIN_COOKIE = "routeiq_console_login"  # double-submit token of the login form (login CSRF)
MAX_FORM_BYTES = 8192
# The session cookie goes only where it is read: the console and the APIs it calls. Not to
# "/": the LLM API and every other path run the plugins and reach the upstream, which must
# never see an operator's session.
SESSION_PATHS = (PREFIX, "/admin", "/key", "/team", "/spend")

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}

NAV = [("overview", "/ui/", "Overview"), ("plugins", "/ui/plugins", "Plugins"), ("routing", "/ui/routing", "Routing"), ("keys", "/ui/keys", "Keys & spend"), ("tools", "/ui/tools", "MCP tools"), ("audit", "/ui/audit", "Audit log")]


def _with_security_headers(send: Send, static: bool) -> Send:
    """CSP and friends on every /ui answer (pages, static files, errors); pages are not cached."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.decode("latin-1").lower() not in SECURITY_HEADERS]
            headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
            if not static:
                headers.append((b"cache-control", b"no-store"))
            message = {**message, "headers": headers}
        await send(message)

    return sending


class ConsoleRoutes(PrefixedRoutes):
    """The /ui routes, tried only for /ui paths, each answer with the security headers."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().handle(scope, receive, _with_security_headers(send, scope.get("path", "").startswith(PREFIX + "/static/")))


def _console_path(back: str) -> str:
    """Where to go after login: a console page, never another site (no open redirect)."""
    if back.startswith(PREFIX + "/") and "//" not in back and "\\" not in back and len(back) < 2048 and back.isprintable():
        return back
    return PREFIX + "/"


def _iso(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat() if ts else ""


class Console:
    def __init__(self, sources: ConsoleSources, sessions: ConsoleSessions, keys: Sequence[AdminKey], settings: ConsoleConfig) -> None:
        self.sources = sources
        self.sessions = sessions
        self.keys = list(keys)
        self.settings = settings
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
        self.env.filters["iso"] = _iso
        self.env.filters["short"] = lambda s, n=12: (s or "")[:n]
        self.env.filters["tojson_attr"] = lambda v: json.dumps(v, separators=(",", ":"), sort_keys=True)

    # ------------------------------------------------------------ plumbing
    def _secure(self, request: Request) -> bool:
        return request.url.scheme == "https" or self.settings.behind_tls

    def render(self, request: Request, template: str, session: Session | None, status: int = 200, **context: Any) -> HTMLResponse:
        role = session.key.role if session is not None else None
        page = self.env.get_template(template).render(
            session=session,
            role=role,
            can_operate=role is not None and allows(role, "operator"),
            can_admin=role is not None and allows(role, "admin"),
            nav=NAV,
            **context,
        )
        return HTMLResponse(page, status_code=status)

    def page(self, handler: Callable[[Request, Session], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session = self.sessions.from_request(request)
            if session is None:
                if request.url.path.startswith(PREFIX + "/live"):
                    return JSONResponse({"error": {"message": "log in again (the console session ended)", "code": "unauthenticated"}}, status_code=401)
                back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                where = "" if back == PREFIX + "/" else "?" + urlencode({"next": back})
                return RedirectResponse(PREFIX + "/login" + where, status_code=303)
            return await handler(request, session)

        return endpoint

    async def _form(self, request: Request) -> dict[str, str]:
        """A small urlencoded form (login, logout), read under MAX_FORM_BYTES."""
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return {}
        fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[0] for k, v in fields.items()}

    # ------------------------------------------------------------ login / logout
    async def login_form(self, request: Request) -> Response:
        if self.sessions.from_request(request) is not None:
            return RedirectResponse(PREFIX + "/", status_code=303)
        return self._login_page(request, None, 200, request.query_params.get("next", ""))

    def _login_page(self, request: Request, error: str | None, status: int, back: str = "") -> Response:
        token = secrets.token_urlsafe(24)
        response = self.render(request, "login.html", None, status, login_token=token, error=error, no_keys=not self.keys, next=_console_path(back))
        response.set_cookie(LOGIN_COOKIE, token, max_age=600, path=PREFIX + "/login", httponly=True, samesite="strict", secure=self._secure(request))
        return response

    async def login(self, request: Request) -> Response:
        form = await self._form(request)
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not hmac.compare_digest(expected.encode(), form.get("login_token", "").encode()):
            return self._login_page(request, "The login form expired; please try again.", 403, form.get("next", ""))
        key = authenticate(self.keys, form.get("key", "").strip())
        if key is None:
            return self._login_page(request, "That is not an admin API key of this gateway (admin.keys).", 401, form.get("next", ""))
        token, _session = self.sessions.issue(key)
        response = RedirectResponse(_console_path(form.get("next", "")), status_code=303)
        for path in SESSION_PATHS:
            response.set_cookie(SESSION_COOKIE, token, max_age=int(self.sessions.ttl_s), path=path, httponly=True, samesite="strict", secure=self._secure(request))
        response.delete_cookie(LOGIN_COOKIE, path=PREFIX + "/login")
        return response

    async def logout(self, request: Request) -> Response:
        session = self.sessions.from_request(request)
        form = await self._form(request)
        if session is not None:
            if not self.sessions.csrf_ok(session, form.get("csrf")):
                return JSONResponse({"error": {"message": "logout needs the session's CSRF token", "code": "csrf_token_missing"}}, status_code=403)
            self.sessions.end(session)
        response = RedirectResponse(PREFIX + "/login", status_code=303)
        for path in SESSION_PATHS:
            response.delete_cookie(SESSION_COOKIE, path=path, httponly=True, samesite="strict", secure=self._secure(request))
        return response

    # ------------------------------------------------------------ pages
    async def overview(self, request: Request, session: Session) -> Response:
        return self.render(
            request,
            "overview.html",
            session,
            active="overview",
            nodes=await views.nodes(self.sources),
            plugins=views.plugin_summary(self.sources.plugins),
            breakers=views.breakers(self.sources),
            poll_s=self.sources.series.poll_s,
        )

    async def plugins(self, request: Request, session: Session) -> Response:
        return self.render(request, "plugins.html", session, active="plugins", plugins=views.plugin_summary(self.sources.plugins), failed=self.sources.plugins.failed)

    async def plugin(self, request: Request, session: Session) -> Response:
        detail = views.plugin_detail(self.sources, request.path_params["name"])
        if detail is None:
            return self.render(request, "missing.html", session, 404, active="plugins", what=f"plugin {request.path_params['name']!r}", back="/ui/plugins")
        recent = views.audit(self.sources, plugin=detail["name"], limit=50)
        return self.render(request, "plugin.html", session, active="plugins", p=detail, audit=recent)

    async def routing(self, request: Request, session: Session) -> Response:
        return self.render(
            request, "routing.html", session, active="routing", routing=views.routing(self.sources), recent=await views.recent_requests(self.sources)
        )

    async def keys_page(self, request: Request, session: Session) -> Response:
        return self.render(request, "keys.html", session, active="keys", data=await views.keys_and_spend(self.sources))

    async def tools(self, request: Request, session: Session) -> Response:
        return self.render(request, "tools.html", session, active="tools", tools=views.tools(self.sources))

    async def audit(self, request: Request, session: Session) -> Response:
        q = request.query_params
        chosen = {"plugin": q.get("plugin", ""), "call": q.get("call", ""), "reason": q.get("reason", "")}
        return self.render(request, "audit.html", session, active="audit", audit=views.audit(self.sources, **chosen), chosen=chosen)

    async def not_found(self, request: Request, session: Session) -> Response:
        return self.render(request, "missing.html", session, 404, what=f"console page {request.url.path!r}", back="/ui/")

    async def live(self, request: Request, session: Session) -> Response:
        """What the pages refresh without a reload: the chart series, plugin states, breakers, nodes."""
        return JSONResponse(
            {
                "series": self.sources.series.points(),
                "poll_s": self.sources.series.poll_s,
                "plugins": views.plugin_summary(self.sources.plugins),
                "breakers": views.breakers(self.sources),
                "nodes": await views.nodes(self.sources),
            }
        )

    # ------------------------------------------------------------ routes
    def route(self) -> ConsoleRoutes:
        return ConsoleRoutes(PREFIX, self.routes())

    def routes(self) -> list[BaseRoute]:
        async def to_slash(_: Request) -> Response:
            return RedirectResponse(PREFIX + "/", status_code=308)

        return [
            Route(PREFIX, to_slash, methods=["GET"]),
            Route(PREFIX + "/", self.page(self.overview), methods=["GET"]),
            Route(PREFIX + "/login", self.login_form, methods=["GET"]),
            Route(PREFIX + "/login", self.login, methods=["POST"]),
            Route(PREFIX + "/logout", self.logout, methods=["POST"]),
            Route(PREFIX + "/live", self.page(self.live), methods=["GET"]),
            Route(PREFIX + "/plugins", self.page(self.plugins), methods=["GET"]),
            Route(PREFIX + "/plugins/{name}", self.page(self.plugin), methods=["GET"]),
            Route(PREFIX + "/routing", self.page(self.routing), methods=["GET"]),
            Route(PREFIX + "/keys", self.page(self.keys_page), methods=["GET"]),
            Route(PREFIX + "/tools", self.page(self.tools), methods=["GET"]),
            Route(PREFIX + "/audit", self.page(self.audit), methods=["GET"]),
            Mount(PREFIX + "/static", app=StaticFiles(directory=HERE / "static"), name="console-static"),
            # Any other /ui path is the console's 404, never passed on to the plugins and upstream.
            Route(PREFIX + "/{rest:path}", self.page(self.not_found)),
        ]


__all__ = ["Console", "ConsoleRoutes", "PREFIX"]
