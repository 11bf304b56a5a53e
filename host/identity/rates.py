"""Requests and tokens per minute, per key and per team: fixed one-minute windows, in
process (one worker) or in Redis (exact across workers and replicas).

A request is counted when it is let through (`admit`): it is refused when the window
already holds `rpm_limit` requests, or `tpm_limit` tokens. Tokens are added when the
request settles (`add_tokens`), so a window's token count trails by the requests in
flight, as LiteLLM's does."""

from __future__ import annotations

from typing import Protocol, Sequence


class Window(Protocol):
    async def admit(self, scopes: Sequence[tuple[str, int | None, int | None]], now: float) -> tuple[str, str] | None:
        """Count one request in each scope (name, rpm_limit, tpm_limit) unless one is over
        a limit; returns (scope, "rpm" | "tpm") of the first one over, or None."""

    async def add_tokens(self, scopes: Sequence[str], tokens: int, now: float) -> None: ...

    async def close(self) -> None: ...


def minute(now: float) -> int:
    return int(now // 60)


def retry_after_s(now: float) -> int:
    """Seconds until the next window."""
    return max(1, int(60 - now % 60 + 0.999))


class MemoryWindow:
    def __init__(self) -> None:
        self._requests: dict[tuple[str, int], int] = {}
        self._tokens: dict[tuple[str, int], int] = {}
        self._minute = 0

    def _roll(self, now: float) -> int:
        m = minute(now)
        if m != self._minute:  # older windows are never read again
            self._requests = {k: v for k, v in self._requests.items() if k[1] >= m}
            self._tokens = {k: v for k, v in self._tokens.items() if k[1] >= m}
            self._minute = m
        return m

    async def admit(self, scopes: Sequence[tuple[str, int | None, int | None]], now: float) -> tuple[str, str] | None:
        m = self._roll(now)
        for name, rpm, tpm in scopes:
            if rpm is not None and self._requests.get((name, m), 0) >= rpm:
                return name, "rpm"
            if tpm is not None and self._tokens.get((name, m), 0) >= tpm:
                return name, "tpm"
        for name, rpm, _ in scopes:
            if rpm is not None:
                self._requests[(name, m)] = self._requests.get((name, m), 0) + 1
        return None

    async def add_tokens(self, scopes: Sequence[str], tokens: int, now: float) -> None:
        m = self._roll(now)
        for name in scopes:
            self._tokens[(name, m)] = self._tokens.get((name, m), 0) + tokens

    async def close(self) -> None:
        pass


# Check every scope, then count in all of them, in one step: two workers racing for the
# last request of a window cannot both get it.
_ADMIT = """
for i = 1, #KEYS, 2 do
  local rpm, tpm = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  if rpm >= 0 and tonumber(redis.call('GET', KEYS[i]) or '0') >= rpm then return {(i + 1) / 2, 'rpm'} end
  if tpm >= 0 and tonumber(redis.call('GET', KEYS[i + 1]) or '0') >= tpm then return {(i + 1) / 2, 'tpm'} end
end
for i = 1, #KEYS, 2 do
  if tonumber(ARGV[i]) >= 0 then
    redis.call('INCR', KEYS[i])
    redis.call('EXPIRE', KEYS[i], 120)
  end
end
return false
"""


class RedisWindow:
    def __init__(self, url: str, prefix: str, timeout_s: float) -> None:
        import redis.asyncio as aioredis

        self._client = aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._admit = self._client.register_script(_ADMIT)
        self._prefix = f"{prefix}:rates:"

    def _keys(self, name: str, m: int) -> tuple[str, str]:
        return f"{self._prefix}{name}:{m}:r", f"{self._prefix}{name}:{m}:t"

    async def admit(self, scopes: Sequence[tuple[str, int | None, int | None]], now: float) -> tuple[str, str] | None:
        limited = [s for s in scopes if s[1] is not None or s[2] is not None]
        if not limited:
            return None
        m = minute(now)
        keys: list[str] = []
        args: list[int] = []
        for name, rpm, tpm in limited:
            keys += self._keys(name, m)
            args += [-1 if rpm is None else rpm, -1 if tpm is None else tpm]
        over = await self._admit(keys=keys, args=args)
        if not over:
            return None
        index, kind = over
        return limited[int(index) - 1][0], kind.decode() if isinstance(kind, bytes) else str(kind)

    async def add_tokens(self, scopes: Sequence[str], tokens: int, now: float) -> None:
        m = minute(now)
        async with self._client.pipeline(transaction=False) as pipe:
            for name in scopes:
                key = self._keys(name, m)[1]
                pipe.incrby(key, tokens)
                pipe.expire(key, 120)
            await pipe.execute()

    async def close(self) -> None:
        await self._client.aclose()


__all__ = ["Window", "MemoryWindow", "RedisWindow", "retry_after_s", "minute"]
