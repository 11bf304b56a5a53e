"""Which requests need a virtual key, and the answer when one is refused.

The check runs in the plugin filter once the request's route is known (a route's `auth`
wins over `keys.require_on`) and before any plugin sees the request, so the plugins read
the authenticated consumer (`routeiq.consumer.*`) and a refused request reaches no plugin
and no upstream."""

from __future__ import annotations

from typing import Sequence

from starlette.types import Send

from routeiq.error_responses import client_error_body, send_bytes
from routeiq.identity.authenticator import Consumer, KeyAuthenticator, Refusal


class FrontDoorAuth:
    def __init__(self, authenticator: KeyAuthenticator, require_on: Sequence[str]) -> None:
        self.authenticator = authenticator
        self.require_on = tuple(require_on)

    def required(self, path: str, route_auth: bool | None) -> bool:
        if route_auth is not None:
            return route_auth
        return path.startswith(self.require_on)

    async def admit(self, headers: list[tuple[bytes, bytes]], path: str, route: str | None, send: Send) -> Consumer | None:
        """The consumer, or None once the refusal was sent."""
        try:
            return await self.authenticator.authenticate(headers, path, route)
        except Refusal as refusal:
            body = client_error_body(path, refusal.status, refusal.message, refusal.kind, refusal.code)
            extra = [(k.encode(), v.encode()) for k, v in refusal.headers.items()]
            if refusal.status == 401:
                extra.append((b"www-authenticate", b'Bearer realm="routeiq"'))
            await send_bytes(send, refusal.status, body, extra)
            return None


__all__ = ["FrontDoorAuth"]
