"""Browser sessions of the operator console: an admin key, presented once at login,
becomes a signed, expiring session cookie; every state-changing request made with that
cookie must also carry the session's CSRF token (synchronizer token, checked here).

The cookie holds no secret: the key's name, a fingerprint of its hash (a key replaced
under the same name ends its sessions), the expiry and a random session id, signed with
HMAC-SHA256. Logout records the session id as ended in the shared store, so with
`kv: redis` it ends on every worker and replica at once."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from starlette.requests import Request

from routeiq.services.shared_store import SharedStore, StoreUnavailable

from .auth import AdminKey, authenticate

SESSION_COOKIE = "routeiq_console"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ENDED_NAMESPACE = "routeiq:console-sessions-ended"  # not a vm_id a plugin config can name by accident


@dataclass(frozen=True)
class Session:
    key: AdminKey
    sid: str
    expires_at: float
    csrf: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def session_secret(configured: str | None, state_dir: Path) -> bytes:
    """The signing secret: `admin.console.session_secret` when set (replicas behind one
    load balancer need the same one), else a random one kept in the admin state dir
    (shared by the workers of one node; created once, readable by its owner only)."""
    if configured:
        return hashlib.sha256(configured.encode()).digest()
    path = state_dir / "console-session.key"
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another worker is writing it right now
            data = path.read_bytes()
            if len(data) == 32:
                return data
            time.sleep(0.02)
        raise OSError(f"{path}: not a console session key (32 bytes); delete it to make a new one") from None
    with os.fdopen(fd, "wb") as out:
        out.write(secrets.token_bytes(32))
    return path.read_bytes()


class ConsoleSessions:
    def __init__(
        self, keys: Sequence[AdminKey], secret: Callable[[], bytes], ttl_s: float, store: SharedStore | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.keys = list(keys)
        self.ttl_s = ttl_s
        self._load_secret = secret  # read (or created) on first use: a gateway nobody logs in to writes nothing
        self._secret: bytes | None = None
        self._store = store
        self._clock = clock

    def _mac(self, what: bytes) -> bytes:
        if self._secret is None:
            self._secret = self._load_secret()
        return hmac.new(self._secret, what, hashlib.sha256).digest()

    @staticmethod
    def _fingerprint(key: AdminKey) -> str:
        return key.sha256.lower()[:16]

    def issue(self, key: AdminKey) -> tuple[str, Session]:
        """A cookie value and its session for `key`, valid for ttl_s."""
        sid = secrets.token_urlsafe(16)
        expires_at = int(self._clock() + self.ttl_s)
        payload = json.dumps({"k": key.name, "f": self._fingerprint(key), "e": expires_at, "s": sid}, separators=(",", ":")).encode()
        token = f"{_b64(payload)}.{_b64(self._mac(payload))}"
        return token, Session(key, sid, expires_at, self._csrf(sid))

    def _csrf(self, sid: str) -> str:
        return _b64(self._mac(b"csrf\0" + sid.encode()))

    def verify(self, token: str | None) -> Session | None:
        """The live session of a cookie value, or None (unsigned, expired, ended, or its
        key is gone or was replaced)."""
        if not self.keys or not token or len(token) > 1024 or token.count(".") != 1:
            return None
        body, mac = token.split(".")
        try:
            payload, signature = _unb64(body), _unb64(mac)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(signature, self._mac(payload)):
            return None
        try:
            claims = json.loads(payload)
            name, fingerprint, expires_at, sid = str(claims["k"]), str(claims["f"]), float(claims["e"]), str(claims["s"])
        except (ValueError, KeyError, TypeError):
            return None
        if expires_at <= self._clock():
            return None
        key = next((k for k in self.keys if k.name == name and self._fingerprint(k) == fingerprint), None)
        if key is None or self._ended(sid):
            return None
        return Session(key, sid, expires_at, self._csrf(sid))

    def _ended(self, sid: str) -> bool:
        if self._store is None:
            return False
        try:
            value, _ = self._store.get(ENDED_NAMESPACE, sid)
        except StoreUnavailable:
            return True  # cannot tell whether it was logged out: refuse (log in again later)
        return value is not None

    def end(self, session: Session) -> None:
        if self._store is not None:
            try:
                self._store.set(ENDED_NAMESPACE, session.sid, str(int(session.expires_at)).encode(), 0)
            except StoreUnavailable:
                pass  # the cookie is cleared anyway; the signed token still expires

    def from_request(self, request: Request) -> Session | None:
        return self.verify(request.cookies.get(SESSION_COOKIE))

    @staticmethod
    def csrf_ok(session: Session, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(session.csrf.encode(), (presented or "").encode())


def request_caller(request: Request, keys: Sequence[AdminKey], sessions: ConsoleSessions | None, presented: str | None) -> tuple[AdminKey | None, str | None]:
    """Who makes an admin request: the key presented in a header, else the console session
    (cookie) - which must carry its CSRF token on a state-changing method. Returns the key
    and, when refused for CSRF, why."""
    key = authenticate(list(keys), presented) if presented else None
    if key is not None or sessions is None:
        return key, None
    session = sessions.from_request(request)
    if session is None:
        return None, None
    if request.method not in SAFE_METHODS and not sessions.csrf_ok(session, request.headers.get(CSRF_HEADER)):
        return None, f"a console request that changes something needs the session's CSRF token in {CSRF_HEADER}"
    return session.key, None
