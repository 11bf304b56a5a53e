"""Who is calling: the virtual key a request presents, checked at the front door.

`Authorization: Bearer sk-...` or `x-api-key: sk-...`. The key's record (and its team's)
is cached per node for `cache_ttl_s`: a revoked, blocked or changed key is seen by every
node within that bound. Refusals are OpenAI-shaped: 401 (no key, unknown, blocked,
expired), 403 (route or model not allowed), 429 (over budget, over rpm/tpm, with
retry-after), 503 (the key database cannot be read and the cached record is stale: fail
closed; with `store_down: cached` a key seen before keeps its last known record, an
unknown key is still refused).

Only the sha256 of a presented key is kept in memory, and a key is compared by that hash."""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

from .database import DatabaseUnavailable
from .keys import KEY_PREFIX, KeyStore, Team, VirtualKey, current_spend, hash_token
from .rates import Window, retry_after_s
from .spend import Charge, SpendLedger


@dataclass(frozen=True)
class Consumer:
    """The authenticated caller, as plugins and the LLM path see it."""

    id: str  # the key's alias, else "key:<first 16 of its sha256>"
    key_hash: str
    key_name: str
    key_alias: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    team_alias: str | None = None
    models: tuple[str, ...] = ()  # empty: every model group
    metadata: Mapping[str, Any] = field(default_factory=dict)
    master: bool = False

    def allows_model(self, model: str) -> bool:
        return self.master or not self.models or model in self.models

    def properties(self) -> dict[str, str]:
        """`routeiq.consumer.<name>` values (docs/keys.md)."""
        values = {"id": self.id, "key_hash": self.key_hash, "key_name": self.key_name, "key_alias": self.key_alias, "user_id": self.user_id, "team_id": self.team_id, "team_alias": self.team_alias}
        return {k: v for k, v in values.items() if v is not None}


class Refusal(Exception):
    def __init__(self, status: int, message: str, code: str, kind: str = "invalid_request_error", headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.kind = kind
        self.headers = dict(headers or {})


@dataclass
class _Cached:
    key: VirtualKey | None
    team: Team | None
    fresh_until: float  # monotonic


def presented_key(headers: Mapping[bytes, bytes] | list[tuple[bytes, bytes]]) -> str | None:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    api_key = None
    for k, v in pairs:
        if k == b"authorization":
            text = v.decode("latin-1").strip()
            if text[:7].lower() == "bearer ":
                return text[7:].strip()
        elif k == b"x-api-key" and api_key is None:
            api_key = v.decode("latin-1").strip()
    return api_key


class KeyAuthenticator:
    def __init__(
        self,
        store: KeyStore,
        ledger: SpendLedger,
        window: Window,
        master_key: str | None = None,
        cache_ttl_s: float = 1.0,
        store_down: Literal["closed", "cached"] = "closed",
        max_cached: int = 100_000,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.window = window
        self._master_hash = hash_token(master_key) if master_key else None
        self.cache_ttl_s = cache_ttl_s
        self.store_down = store_down
        self.max_cached = max_cached
        self.clock = clock
        self.monotonic = monotonic
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._reads: dict[str, asyncio.Future[_Cached]] = {}  # one database read per key at a time
        self.refused: dict[str, int] = {}
        self.store_errors = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def is_master(self, token: str | None) -> bool:
        return bool(token and self._master_hash and hmac.compare_digest(hash_token(token), self._master_hash))

    def forget(self, token_hash: str | None = None) -> None:
        """Drop cached records (an admin change on this node is seen at once here)."""
        if token_hash is None:
            self._cache.clear()
        else:
            self._cache.pop(token_hash, None)

    async def _record(self, token_hash: str) -> _Cached:
        cached = self._cache.get(token_hash)
        if cached is not None and self.monotonic() < cached.fresh_until:
            return cached
        pending = self._reads.get(token_hash)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[_Cached] = asyncio.get_running_loop().create_future()
        self._reads[token_hash] = future
        try:
            key, team = await asyncio.to_thread(self._read, token_hash)
            fresh = _Cached(key, team, self.monotonic() + self.cache_ttl_s)
            self._cache[token_hash] = fresh
            self._cache.move_to_end(token_hash)
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
            future.set_result(fresh)
            return fresh
        except DatabaseUnavailable as exc:
            self.store_errors += 1
            if cached is not None and cached.key is not None and self.store_down == "cached":
                future.set_result(cached)
                return cached
            refusal = Refusal(503, "the key database cannot be reached; try again shortly", "auth_unavailable", "server_error", {"retry-after": "1"})
            future.set_exception(refusal)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise refusal from exc
        finally:
            self._reads.pop(token_hash, None)

    def _read(self, token_hash: str) -> tuple[VirtualKey | None, Team | None]:
        key = self.store.get(token_hash)
        team = self.store.team(key.team_id) if key is not None and key.team_id else None
        return key, team

    async def authenticate(self, headers: Any, path: str, route: str | None) -> Consumer:
        """The consumer of a request, or Refusal. Counts the request against rpm limits."""
        token = presented_key(headers)
        if not token:
            raise self._refuse(Refusal(401, "no API key: send Authorization: Bearer sk-... (or x-api-key)", "missing_api_key"))
        token_hash = hash_token(token)
        if self._master_hash is not None and hmac.compare_digest(token_hash, self._master_hash):
            return Consumer(id="master", key_hash=token_hash, key_name="master_key", master=True)
        if not token.startswith(KEY_PREFIX):
            raise self._refuse(Refusal(401, "invalid API key", "invalid_api_key"))
        record = await self._record(token_hash)
        key, team, now = record.key, record.team, self.clock()
        if key is None:
            raise self._refuse(Refusal(401, "invalid API key", "invalid_api_key"))
        if key.blocked or (team is not None and team.blocked):
            raise self._refuse(Refusal(401, f"the key {key.key_name} is blocked" if key.blocked else f"team {team.team_id} is blocked", "key_blocked"))  # type: ignore[union-attr]
        if key.expires_at is not None and now >= key.expires_at:
            raise self._refuse(Refusal(401, f"the key {key.key_name} expired", "key_expired"))
        if key.routes and not any(path.startswith(r) or r == route for r in key.routes):
            raise self._refuse(Refusal(403, f"the key {key.key_name} may not call {path}", "route_not_allowed"))
        self._check_budget(f"key:{token_hash}", key.max_budget, key.spend, key.budget_reset_at, key.charges, now, f"the key {key.key_name}")
        if team is not None:
            self._check_budget(f"team:{team.team_id}", team.max_budget, team.spend, team.budget_reset_at, team.charges, now, f"team {team.team_id}")
        scopes = [(f"key:{token_hash}", key.rpm_limit, key.tpm_limit)]
        if team is not None:
            scopes.append((f"team:{team.team_id}", team.rpm_limit, team.tpm_limit))
        over = await self.window.admit(scopes, now)
        if over is not None:
            scope, kind = over
            who = f"the key {key.key_name}" if scope.startswith("key:") else f"team {team.team_id}"  # type: ignore[union-attr]
            limit = "requests" if kind == "rpm" else "tokens"
            raise self._refuse(Refusal(429, f"{who} is over its {limit} per minute limit", f"{kind}_limit_exceeded", "rate_limit_error", {"retry-after": str(retry_after_s(now))}))
        models = key.models or (team.models if team is not None else ())
        return Consumer(
            id=key.key_alias or f"key:{token_hash[:16]}",
            key_hash=token_hash,
            key_name=key.key_name,
            key_alias=key.key_alias,
            user_id=key.user_id,
            team_id=key.team_id,
            team_alias=team.team_alias if team is not None else None,
            models=tuple(models),
            metadata=dict(key.metadata),
        )

    def _check_budget(self, scope: str, max_budget: float | None, spend: float, reset_at: float | None, seen: int, now: float, who: str) -> None:
        if max_budget is None:
            return
        spent = current_spend(spend, reset_at, now) + self.ledger.unseen(scope, seen)
        if spent >= max_budget:
            headers = {"retry-after": str(max(1, int(reset_at - now + 0.999)))} if reset_at is not None and reset_at > now else {}
            raise self._refuse(Refusal(429, f"{who} is over its budget: spent {spent:.6f} of {max_budget:.6f}", "budget_exceeded", "budget_exceeded", headers))

    def _refuse(self, refusal: Refusal) -> Refusal:
        self.refused[refusal.code] = self.refused.get(refusal.code, 0) + 1
        return refusal

    # ------------------------------------------------------------ after a call
    def charge(self, consumer: Consumer, request_id: str, model_group: str, deployment: str, prompt_tokens: int, completion_tokens: int, cost: float) -> None:
        """Charge an answered request to its consumer: spend (accepted now, written by the
        ledger, once per request id) and tokens per minute (counted in the background)."""
        if consumer.master:
            return
        now = self.clock()
        self.ledger.charge(Charge(request_id, consumer.key_hash, consumer.key_alias, consumer.team_id or "", consumer.user_id, model_group, deployment, prompt_tokens, completion_tokens, cost, now))
        tokens = prompt_tokens + completion_tokens
        if tokens:
            scopes = [f"key:{consumer.key_hash}"] + ([f"team:{consumer.team_id}"] if consumer.team_id else [])
            task = asyncio.get_running_loop().create_task(self._add_tokens(scopes, tokens, now))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _add_tokens(self, scopes: list[str], tokens: int, now: float) -> None:
        try:
            await self.window.add_tokens(scopes, tokens, now)
        except Exception:  # a missed token count must not fail an answered request
            self.store_errors += 1


__all__ = ["Consumer", "KeyAuthenticator", "Refusal", "presented_key"]
