"""Key management shaped like LiteLLM's proxy (`/key/*`, `/team/*`, `/spend/*`), so its
scripts and habits carry over.

Authenticated with the master key (`keys.master_key`, as LiteLLM) or an `admin.keys` key
(or the console's session cookie with its CSRF token on changes, docs/console.md):
viewer for reads, operator for changes. Bodies are strict JSON objects; errors are
OpenAI-shaped (`{"error": {"message", "type", "param", "code"}}`) and name the field. A key
is returned once, by /key/generate and /key/regenerate; everything else shows its
`key_name` (`sk-...abcd`) and `token` (its sha256)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any, Awaitable, Callable, Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from routeiq.identity.authenticator import KeyAuthenticator, presented_key
from routeiq.identity.database import DatabaseUnavailable
from routeiq.identity.keys import KEY_FIELDS, KeyRequestError, KeyStore, VirtualKey, duration_s
from routeiq.identity.spend import SpendLedger
from routeiq.strict_json import JsonInputError, loads

from .auth import AdminKey, allows
from .sessions import ConsoleSessions, request_caller

Handler = Callable[[Request], Awaitable[Response]]


def _error(status: int, message: str, code: str, param: str | None = None) -> JSONResponse:
    kind = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}.get(status, "invalid_request_error" if status < 500 else "server_error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status)


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _key_view(key: VirtualKey) -> dict[str, Any]:
    view = key.public()
    view["token"] = view.pop("token_hash")
    view["expires"] = _iso(key.expires_at)
    return view


def _iso(ts: float | None) -> str | None:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat() if ts is not None else None


def _day(text: str | None, param: str) -> str | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise _Refused(_error(400, f"{param}: use YYYY-MM-DD", "invalid_date", param)) from None


def key_routes(
    store: KeyStore, ledger: SpendLedger, authenticator: KeyAuthenticator, admin_keys: Sequence[AdminKey], sessions: ConsoleSessions | None = None
) -> list[Route]:
    def guarded(role: str, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            presented = presented_key(request.headers.raw)
            if not authenticator.is_master(presented):
                key, csrf_refusal = request_caller(request, admin_keys, sessions, presented)
                if csrf_refusal is not None:
                    return _error(403, csrf_refusal, "csrf_token_missing")
                if key is None:
                    return _error(401, "the master key (keys.master_key) or an admin API key is required", "unauthenticated")
                if not allows(key.role, role):
                    return _error(403, f"role {key.role!r} may not do this (needs {role})", "forbidden")
            try:
                return await handler(request)
            except _Refused as refused:
                return refused.response
            except KeyRequestError as exc:
                return _error(400, str(exc), "invalid_field")
            except DatabaseUnavailable as exc:
                return _error(503, f"the key database cannot be reached: {exc}", "database_unavailable")

        endpoint.__doc__ = handler.__doc__
        return endpoint

    async def body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        try:
            document = loads(raw or b"{}")
        except JsonInputError as exc:
            raise _Refused(_error(400, f"the body is not valid JSON: {exc.message}", "invalid_json")) from None
        if not isinstance(document, dict):
            raise _Refused(_error(400, "the body must be a JSON object", "invalid_json"))
        return document

    def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[Any]:
        return asyncio.to_thread(fn, *args, **kwargs)

    def key_fields(document: dict[str, Any]) -> dict[str, Any]:
        values = {k: v for k, v in document.items() if k in KEY_FIELDS}
        duration = document.get("duration")
        if duration is not None:  # LiteLLM: the key expires this long from now
            if not isinstance(duration, str):
                raise KeyRequestError("duration must be a string such as 30d")
            values["expires_at"] = time.time() + (duration_s(duration) or 0)
        extra = sorted(set(document) - set(KEY_FIELDS) - {"duration", "key"})
        if extra:
            raise KeyRequestError(f"unknown field(s) {', '.join(extra)}; allowed: {', '.join(KEY_FIELDS + ('duration',))}")
        return values

    async def find_key(document_or_query: Any, param: str = "key") -> VirtualKey:
        value = document_or_query.get(param)
        if not isinstance(value, str) or not value:
            raise _Refused(_error(400, f"{param}: give the key, its token (sha256) or its alias", "missing_key", param))
        key = await run(store.find, value)
        if key is None:
            raise _Refused(_error(404, f"no key {value if not value.startswith('sk-') else value[:6] + '...'}", "key_not_found", param))
        return key

    # ------------------------------------------------------------------ keys
    async def generate(request: Request) -> Response:
        """
        summary: Create a virtual key (shown once) with its owner, models, routes, budget, limits, expiry (duration) and metadata
        responses: {200: {description: the key}}
        """
        token, key = await run(store.generate, **key_fields(await body(request)))
        return JSONResponse({"key": token, **_key_view(key)})

    async def info(request: Request) -> Response:
        """
        summary: One key's settings and spend in its budget period (?key=sk-... or its token or alias)
        responses: {200: {description: the key}, 404: {description: no such key}}
        """
        key = await find_key(request.query_params)
        return JSONResponse({"key": key.token_hash, "info": _key_view(key)})

    async def list_keys(request: Request) -> Response:
        """
        summary: Keys (?team_id=, ?user_id=)
        responses: {200: {description: keys}}
        """
        keys = await run(store.list_keys, request.query_params.get("team_id"), request.query_params.get("user_id"))
        return JSONResponse({"keys": [_key_view(k) for k in keys], "total_count": len(keys)})

    async def update(request: Request) -> Response:
        """
        summary: Change a key's settings (the fields given; the key is `key`)
        responses: {200: {description: the key}}
        """
        document = await body(request)
        key = await find_key(document)
        updated = await run(store.update, key.token_hash, **key_fields(document))
        authenticator.forget(key.token_hash)
        return JSONResponse(_key_view(updated))

    async def set_blocked(request: Request, blocked: bool) -> Response:
        key = await find_key(await body(request))
        updated = await run(store.update, key.token_hash, blocked=blocked)
        authenticator.forget(key.token_hash)
        return JSONResponse(_key_view(updated))

    async def block(request: Request) -> Response:
        """
        summary: Block a key (401 key_blocked until unblocked; every node within keys.cache_ttl_s)
        responses: {200: {description: the key}}
        """
        return await set_blocked(request, True)

    async def unblock(request: Request) -> Response:
        """
        summary: Unblock a key
        responses: {200: {description: the key}}
        """
        return await set_blocked(request, False)

    async def regenerate(request: Request) -> Response:
        """
        summary: Rotate a key - a new key with the same settings and spend; the old one stops working
        responses: {200: {description: the new key}}
        """
        document = await body(request) if request.method == "POST" and not request.path_params.get("key") else {}
        if request.path_params.get("key"):
            document = {"key": request.path_params["key"]}
        key = await find_key(document)
        token, fresh = await run(store.regenerate, key.token_hash)
        authenticator.forget(key.token_hash)
        return JSONResponse({"key": token, **_key_view(fresh)})

    async def delete(request: Request) -> Response:
        """
        summary: Delete keys ({"keys": [...]} by key, token or alias, or {"key_aliases": [...]})
        responses: {200: {description: deleted}}
        """
        document = await body(request)
        wanted = list(document.get("keys") or []) + list(document.get("key_aliases") or [])
        if not wanted or not all(isinstance(k, str) for k in wanted):
            raise _Refused(_error(400, "keys: give a list of keys, tokens or aliases", "missing_key", "keys"))
        hashes = []
        for value in wanted:
            key = await run(store.find, value)
            if key is None:
                raise _Refused(_error(404, f"no key {value if not value.startswith('sk-') else value[:6] + '...'}; nothing was deleted", "key_not_found", "keys"))
            hashes.append(key.token_hash)
        deleted = await run(store.delete, hashes)
        for h in hashes:
            authenticator.forget(h)
        return JSONResponse({"deleted_keys": hashes, "deleted": deleted})

    # ----------------------------------------------------------------- teams
    async def new_team(request: Request) -> Response:
        """
        summary: Create a team (team_id optional) with models, budget, limits and metadata
        responses: {200: {description: the team}}
        """
        document = await body(request)
        team_id = document.pop("team_id", None)
        team = await run(store.new_team, team_id, **document)
        return JSONResponse(team.public())

    async def team_info(request: Request) -> Response:
        """
        summary: A team, its spend and its keys (?team_id=)
        responses: {200: {description: the team}, 404: {description: no such team}}
        """
        team_id = request.query_params.get("team_id") or ""
        team = await run(store.team, team_id)
        if team is None:
            return _error(404, f"no team {team_id!r}", "team_not_found", "team_id")
        keys = await run(store.list_keys, team_id)
        return JSONResponse({"team_id": team_id, "team_info": team.public(), "keys": [_key_view(k) for k in keys]})

    async def list_teams(_: Request) -> Response:
        """
        summary: Teams
        responses: {200: {description: teams}}
        """
        return JSONResponse([t.public() for t in await run(store.list_teams)])

    async def update_team(request: Request) -> Response:
        """
        summary: Change a team's settings (team_id and the fields given)
        responses: {200: {description: the team}}
        """
        document = await body(request)
        team_id = document.pop("team_id", None)
        if not isinstance(team_id, str):
            return _error(400, "team_id is required", "missing_team", "team_id")
        try:
            team = await run(store.update_team, team_id, **document)
        except LookupError:
            return _error(404, f"no team {team_id!r}", "team_not_found", "team_id")
        authenticator.forget()  # its keys' cached records carry the team
        return JSONResponse(team.public())

    async def delete_team(request: Request) -> Response:
        """
        summary: Delete teams and their keys ({"team_ids": [...]})
        responses: {200: {description: deleted}}
        """
        document = await body(request)
        ids = document.get("team_ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(t, str) for t in ids):
            return _error(400, "team_ids: give a list of team ids", "missing_team", "team_ids")
        deleted = [t for t in ids if await run(store.delete_team, t)]
        authenticator.forget()
        return JSONResponse({"deleted_teams": deleted})

    # ----------------------------------------------------------------- spend
    async def spend_logs(request: Request) -> Response:
        """
        summary: Spend log rows, newest first (?api_key= key/token/alias, ?team_id=, ?start_date=, ?end_date= YYYY-MM-DD, ?limit=)
        responses: {200: {description: rows}}
        """
        q = request.query_params
        token_hash = None
        if q.get("api_key"):
            key = await find_key(q, "api_key")
            token_hash = key.token_hash
        start, end = _day(q.get("start_date"), "start_date"), _day(q.get("end_date"), "end_date")
        start_ts = dt.datetime.fromisoformat(start).replace(tzinfo=dt.timezone.utc).timestamp() if start else None
        end_ts = (dt.datetime.fromisoformat(end).replace(tzinfo=dt.timezone.utc) + dt.timedelta(days=1)).timestamp() if end else None
        try:
            limit = max(1, min(10_000, int(q.get("limit", "100"))))
        except ValueError:
            return _error(400, "limit must be an integer", "invalid_limit", "limit")
        rows = await run(ledger.logs, token_hash, q.get("team_id"), start_ts, end_ts, limit)
        return JSONResponse(rows)

    def report(column: str, name: str) -> Handler:
        async def handler(request: Request) -> Response:
            q = request.query_params
            rows = await run(ledger.totals_by, column, _day(q.get("start_date"), "start_date"), _day(q.get("end_date"), "end_date"))
            return JSONResponse([{name: r.pop(column), **r} for r in rows])

        handler.__doc__ = f"""
        summary: Spend, requests and tokens per {name} (?start_date=, ?end_date= YYYY-MM-DD)
        responses: {{200: {{description: totals}}}}
        """
        return handler

    return [
        Route("/key/generate", guarded("operator", generate), methods=["POST"]),
        Route("/key/info", guarded("viewer", info), methods=["GET"]),
        Route("/key/list", guarded("viewer", list_keys), methods=["GET"]),
        Route("/key/update", guarded("operator", update), methods=["POST"]),
        Route("/key/block", guarded("operator", block), methods=["POST"]),
        Route("/key/unblock", guarded("operator", unblock), methods=["POST"]),
        Route("/key/regenerate", guarded("operator", regenerate), methods=["POST"]),
        Route("/key/{key}/regenerate", guarded("operator", regenerate), methods=["POST"]),
        Route("/key/delete", guarded("operator", delete), methods=["POST"]),
        Route("/team/new", guarded("operator", new_team), methods=["POST"]),
        Route("/team/info", guarded("viewer", team_info), methods=["GET"]),
        Route("/team/list", guarded("viewer", list_teams), methods=["GET"]),
        Route("/team/update", guarded("operator", update_team), methods=["POST"]),
        Route("/team/delete", guarded("operator", delete_team), methods=["POST"]),
        Route("/spend/logs", guarded("viewer", spend_logs), methods=["GET"]),
        Route("/spend/keys", guarded("viewer", report("token_hash", "token")), methods=["GET"]),
        Route("/spend/teams", guarded("viewer", report("team_id", "team_id")), methods=["GET"]),
        Route("/spend/models", guarded("viewer", report("model_group", "model")), methods=["GET"]),
        Route("/spend/days", guarded("viewer", report("day", "day")), methods=["GET"]),
    ]


__all__ = ["key_routes"]
