"""Virtual keys and teams: who may call, what with, how much.

A key is shown once, at generation (`sk-` + 32 random bytes, url-safe base64); the
database holds its sha256 only, and `key_name` (`sk-...` + its last 4 characters) so a
listing can tell keys apart. A key belongs to a user and/or a team; a team carries
defaults (models, rpm/tpm) and a budget of its own. Budgets reset every
`budget_duration` (`30s`, `15m`, `1h`, `1d`, `30d`): the reset is computed when spend is
read or charged, so no job has to run for it."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

from .database import Database, Transaction

KEY_PREFIX = "sk-"
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class KeyRequestError(ValueError):
    """A request to the key store that cannot be done (names the field)."""


def duration_s(text: str | None) -> float | None:
    if text is None:
        return None
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise KeyRequestError(f"budget_duration {text!r}: use a count and a unit, e.g. 30s, 15m, 1h, 1d, 30d")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def current_spend(spend: float, reset_at: float | None, now: float) -> float:
    """Spend in the budget period that holds `now` (0 once the period ended)."""
    return 0.0 if reset_at is not None and now >= reset_at else spend


def next_reset(reset_at: float | None, duration: str | None, now: float) -> float | None:
    """The end of the budget period that holds `now`."""
    step = duration_s(duration)
    if step is None:
        return None
    if reset_at is None:
        return now + step
    while reset_at <= now:
        reset_at += step * max(1, int((now - reset_at) // step))
    return reset_at


@dataclass(frozen=True)
class Team:
    team_id: str
    team_alias: str | None = None
    models: tuple[str, ...] = ()  # empty: every model group
    max_budget: float | None = None
    budget_duration: str | None = None
    budget_reset_at: float | None = None
    spend: float = 0.0
    charges: int = 0  # charges applied so far: tells a reader which charges its read saw
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    blocked: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0

    def public(self, now: float | None = None) -> dict[str, Any]:
        out = asdict(self)
        out["models"] = list(self.models)
        out["spend"] = current_spend(self.spend, self.budget_reset_at, now or time.time())
        return out


@dataclass(frozen=True)
class VirtualKey:
    token_hash: str
    key_name: str  # sk-...abcd
    key_alias: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    models: tuple[str, ...] = ()  # empty: the team's, else every model group
    routes: tuple[str, ...] = ()  # path prefixes or route names; empty: all
    max_budget: float | None = None
    budget_duration: str | None = None
    budget_reset_at: float | None = None
    spend: float = 0.0
    charges: int = 0  # charges applied so far: tells a reader which charges its read saw
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    expires_at: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    blocked: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0

    def public(self, now: float | None = None) -> dict[str, Any]:
        """The key as the admin API shows it (never the key itself)."""
        out = asdict(self)
        out["models"] = list(self.models)
        out["routes"] = list(self.routes)
        out["spend"] = current_spend(self.spend, self.budget_reset_at, now or time.time())
        return out


KEY_FIELDS = ("key_alias", "user_id", "team_id", "models", "routes", "max_budget", "budget_duration", "rpm_limit", "tpm_limit", "expires_at", "metadata", "blocked")
TEAM_FIELDS = ("team_alias", "models", "max_budget", "budget_duration", "rpm_limit", "tpm_limit", "metadata", "blocked")
_JSON_FIELDS = ("models", "routes", "metadata")


def _row_of(values: Mapping[str, Any]) -> dict[str, Any]:
    row = dict(values)
    for name in _JSON_FIELDS:
        if name in row:
            value = row[name]
            row[name] = json.dumps(list(value) if name != "metadata" else dict(value or {}), sort_keys=True)
    if "blocked" in row:
        row["blocked"] = 1 if row["blocked"] else 0
    return row


def _key_of(row: Mapping[str, Any]) -> VirtualKey:
    values = dict(row)
    values["models"] = tuple(json.loads(values.get("models") or "[]"))
    values["routes"] = tuple(json.loads(values.get("routes") or "[]"))
    values["metadata"] = json.loads(values.get("metadata") or "{}")
    values["blocked"] = bool(values.get("blocked"))
    return VirtualKey(**values)


def _team_of(row: Mapping[str, Any]) -> Team:
    values = dict(row)
    values["models"] = tuple(json.loads(values.get("models") or "[]"))
    values["metadata"] = json.loads(values.get("metadata") or "{}")
    values["blocked"] = bool(values.get("blocked"))
    return Team(**values)


def _check(values: Mapping[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise KeyRequestError(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    out = dict(values)
    for name in ("models", "routes"):
        if name in out:
            if out[name] is None:
                out[name] = ()
            elif not isinstance(out[name], (list, tuple)) or not all(isinstance(m, str) for m in out[name]):
                raise KeyRequestError(f"{name} must be a list of strings")
            else:
                out[name] = tuple(out[name])
    for name in ("max_budget",):
        if out.get(name) is not None and (not isinstance(out[name], (int, float)) or isinstance(out[name], bool) or out[name] < 0):
            raise KeyRequestError(f"{name} must be a number >= 0")
    for name in ("rpm_limit", "tpm_limit"):
        if out.get(name) is not None and (not isinstance(out[name], int) or isinstance(out[name], bool) or out[name] < 0):
            raise KeyRequestError(f"{name} must be an integer >= 0")
    if "budget_duration" in out:
        duration_s(out["budget_duration"])
    if "metadata" in out and out["metadata"] is not None and not isinstance(out["metadata"], dict):
        raise KeyRequestError("metadata must be an object")
    if "metadata" in out and out["metadata"] is None:
        out["metadata"] = {}
    if out.get("expires_at") is not None and not isinstance(out["expires_at"], (int, float)):
        raise KeyRequestError("expires_at must be a unix time in seconds")
    for name in ("key_alias", "user_id", "team_id", "team_alias"):
        if out.get(name) is not None and not isinstance(out[name], str):
            raise KeyRequestError(f"{name} must be a string")
    return out


class KeyStore:
    """Keys and teams in the database (synchronous; run on a thread from the loop)."""

    def __init__(self, db: Database, clock: Any = time.time) -> None:
        self.db = db
        self.clock = clock

    # ------------------------------------------------------------------ keys
    def generate(self, **values: Any) -> tuple[str, VirtualKey]:
        """A new key; returns the key itself (shown once) and its record."""
        values = _check(values, KEY_FIELDS)
        now = self.clock()
        token = new_token()
        key = VirtualKey(token_hash=hash_token(token), key_name=f"sk-...{token[-4:]}", created_at=now, updated_at=now, **values)
        key = replace(key, budget_reset_at=next_reset(None, key.budget_duration, now))
        with self.db.transaction() as tx:
            if key.team_id is not None and not tx.query("SELECT team_id FROM teams WHERE team_id = :t", {"t": key.team_id}):
                raise KeyRequestError(f"team_id {key.team_id!r}: no such team")
            if key.key_alias is not None and tx.query("SELECT 1 AS x FROM keys WHERE key_alias = :a", {"a": key.key_alias}):
                raise KeyRequestError(f"key_alias {key.key_alias!r} is taken")
            row = _row_of(asdict(key))
            tx.execute(f"INSERT INTO keys ({', '.join(row)}) VALUES ({', '.join(':' + c for c in row)})", row)
        return token, key

    def get(self, token_hash: str) -> VirtualKey | None:
        rows = self.db.query("SELECT * FROM keys WHERE token_hash = :h", {"h": token_hash})
        return _key_of(rows[0]) if rows else None

    def find(self, key_or_hash: str) -> VirtualKey | None:
        """By the key itself, its sha256 or its alias."""
        if key_or_hash.startswith(KEY_PREFIX):
            return self.get(hash_token(key_or_hash))
        rows = self.db.query("SELECT * FROM keys WHERE token_hash = :v OR key_alias = :v", {"v": key_or_hash})
        return _key_of(rows[0]) if rows else None

    def list_keys(self, team_id: str | None = None, user_id: str | None = None) -> list[VirtualKey]:
        sql, params = "SELECT * FROM keys", {}
        where = []
        if team_id is not None:
            where.append("team_id = :t")
            params["t"] = team_id
        if user_id is not None:
            where.append("user_id = :u")
            params["u"] = user_id
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_key_of(r) for r in self.db.query(sql + " ORDER BY created_at", params)]

    def update(self, token_hash: str, **values: Any) -> VirtualKey:
        values = _check(values, KEY_FIELDS)
        with self.db.transaction() as tx:
            rows = tx.query("SELECT * FROM keys WHERE token_hash = :h", {"h": token_hash})
            if not rows:
                raise LookupError("no such key")
            key = replace(_key_of(rows[0]), **values, updated_at=self.clock())
            if "budget_duration" in values:
                key = replace(key, budget_reset_at=next_reset(None, key.budget_duration, self.clock()))
            if values.get("team_id") is not None and not tx.query("SELECT team_id FROM teams WHERE team_id = :t", {"t": values["team_id"]}):
                raise KeyRequestError(f"team_id {values['team_id']!r}: no such team")
            self._write_key(tx, key, "budget_duration" in values)
            return key

    def _write_key(self, tx: Transaction, key: VirtualKey, reset: bool) -> None:
        # Spend is the ledger's: a settings change never writes it back (a charge may have
        # landed since this transaction read the row).
        row = _row_of(asdict(key))
        skip = {"token_hash", "spend", "charges"} | (set() if reset else {"budget_reset_at"})
        sets = ", ".join(f"{c} = :{c}" for c in row if c not in skip)
        tx.execute(f"UPDATE keys SET {sets} WHERE token_hash = :token_hash", row)

    def regenerate(self, token_hash: str) -> tuple[str, VirtualKey]:
        """Rotate: a new key with the same settings and spend; the old one stops working."""
        token = new_token()
        with self.db.transaction() as tx:
            rows = tx.query("SELECT * FROM keys WHERE token_hash = :h", {"h": token_hash})
            if not rows:
                raise LookupError("no such key")
            old = _key_of(rows[0])
            key = replace(old, token_hash=hash_token(token), key_name=f"sk-...{token[-4:]}", updated_at=self.clock())
            tx.execute("DELETE FROM keys WHERE token_hash = :h", {"h": token_hash})
            row = _row_of(asdict(key))
            tx.execute(f"INSERT INTO keys ({', '.join(row)}) VALUES ({', '.join(':' + c for c in row)})", row)
            tx.execute("UPDATE rotated_keys SET new_hash = :new WHERE new_hash = :old", {"new": key.token_hash, "old": token_hash})
            tx.execute("INSERT INTO rotated_keys (old_hash, new_hash, at) VALUES (:old, :new, :at)", {"old": token_hash, "new": key.token_hash, "at": self.clock()})
        return token, key

    def delete(self, token_hashes: list[str]) -> int:
        with self.db.transaction() as tx:
            return sum(tx.execute("DELETE FROM keys WHERE token_hash = :h", {"h": h}) for h in token_hashes)

    # ----------------------------------------------------------------- teams
    def new_team(self, team_id: str | None = None, **values: Any) -> Team:
        values = _check(values, TEAM_FIELDS)
        now = self.clock()
        team = Team(team_id=team_id or str(uuid.uuid4()), created_at=now, updated_at=now, **values)
        team = replace(team, budget_reset_at=next_reset(None, team.budget_duration, now))
        with self.db.transaction() as tx:
            if tx.query("SELECT team_id FROM teams WHERE team_id = :t", {"t": team.team_id}):
                raise KeyRequestError(f"team_id {team.team_id!r} exists")
            row = _row_of(asdict(team))
            tx.execute(f"INSERT INTO teams ({', '.join(row)}) VALUES ({', '.join(':' + c for c in row)})", row)
        return team

    def team(self, team_id: str) -> Team | None:
        rows = self.db.query("SELECT * FROM teams WHERE team_id = :t", {"t": team_id})
        return _team_of(rows[0]) if rows else None

    def list_teams(self) -> list[Team]:
        return [_team_of(r) for r in self.db.query("SELECT * FROM teams ORDER BY created_at")]

    def update_team(self, team_id: str, **values: Any) -> Team:
        values = _check(values, TEAM_FIELDS)
        with self.db.transaction() as tx:
            rows = tx.query("SELECT * FROM teams WHERE team_id = :t", {"t": team_id})
            if not rows:
                raise LookupError("no such team")
            team = replace(_team_of(rows[0]), **values, updated_at=self.clock())
            if "budget_duration" in values:
                team = replace(team, budget_reset_at=next_reset(None, team.budget_duration, self.clock()))
            row = _row_of(asdict(team))
            skip = {"team_id", "spend", "charges"} | (set() if "budget_duration" in values else {"budget_reset_at"})
            sets = ", ".join(f"{c} = :{c}" for c in row if c not in skip)
            tx.execute(f"UPDATE teams SET {sets} WHERE team_id = :team_id", row)
            return team

    def delete_team(self, team_id: str) -> bool:
        """Deletes the team and its keys (LiteLLM does the same)."""
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM keys WHERE team_id = :t", {"t": team_id})
            return tx.execute("DELETE FROM teams WHERE team_id = :t", {"t": team_id}) > 0


__all__ = ["KeyStore", "VirtualKey", "Team", "KeyRequestError", "hash_token", "new_token", "current_spend", "next_reset", "duration_s", "KEY_PREFIX"]
