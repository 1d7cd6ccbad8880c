"""Rate limits: in-process by default, shared through Redis when ``settings.redis_url`` is set.

Rules:
- The algorithm is GCRA (generic cell rate algorithm, as in ATM traffic policing): a limit of
  ``n`` per ``window`` lets a burst of ``n`` through and then one every ``window / n``. The state
  is one timestamp per key (the theoretical arrival time), so Redis holds one small key per
  limited subject and the check is a single atomic script using the Redis server's clock.
- A refused hit does not consume budget; :meth:`RateLimiter.hit` raises
  :class:`~flowbureau.errors.RateLimitedError` with ``retry_after`` whole seconds.
- Keys are ``namespace:subject`` strings chosen by the caller (``otp:phone:<hmac>``,
  ``api:key:<key id>``); subjects are never clear personal data.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from flowbureau.errors import ConfigurationError, RateLimitedError

__all__ = [
    "InProcessRateLimiter",
    "Rate",
    "RateLimiter",
    "RedisRateLimiter",
    "make_rate_limiter",
]


@dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` events per ``window_seconds``."""

    limit: int
    window_seconds: int

    @property
    def interval_ms(self) -> int:
        """Milliseconds one event costs (the emission interval)."""
        return max(1, self.window_seconds * 1000 // self.limit)


class RateLimiter(Protocol):
    """Counts events per key and refuses those beyond their :class:`Rate`."""

    def hit(self, key: str, rate: Rate, *, what: str) -> None:
        """Count one event for ``key``; raise :class:`RateLimitedError` naming ``what`` if over."""

    def reset(self, key: str) -> None:
        """Forget ``key``'s history (e.g. after a successful sign-in)."""


def _refuse(what: str, rate: Rate, wait_ms: int) -> RateLimitedError:
    return RateLimitedError(
        f"too many {what}: at most {rate.limit} per {rate.window_seconds} s",
        retry_after=max(1, math.ceil(wait_ms / 1000)),
    )


class InProcessRateLimiter:
    """GCRA state in a dict guarded by a lock; holds per process only."""

    def __init__(self, clock_ms: Callable[[], int] | None = None) -> None:
        self._clock_ms = clock_ms or (lambda: time.monotonic_ns() // 1_000_000)
        self._tat: dict[str, int] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, rate: Rate, *, what: str) -> None:
        """Count one event for ``key`` or raise :class:`RateLimitedError`."""
        with self._lock:
            now = self._clock_ms()
            new_tat = max(self._tat.get(key, now), now) + rate.interval_ms
            wait = new_tat - now - rate.window_seconds * 1000
            if wait > 0:
                raise _refuse(what, rate, wait)
            self._tat[key] = new_tat
            if len(self._tat) > 100_000:  # keep memory bounded: drop keys whose budget is full
                self._tat = {k: t for k, t in self._tat.items() if t > now}

    def reset(self, key: str) -> None:
        """Forget ``key``."""
        with self._lock:
            self._tat.pop(key, None)


_GCRA_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - now - window
if wait > 0 then return wait end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return 0
"""


class RedisRateLimiter:
    """GCRA in Redis: one key per subject, updated atomically by a Lua script."""

    def __init__(self, url: str, *, prefix: str = "flowbureau:rl:") -> None:
        import redis

        self._client: Any = redis.Redis.from_url(url)
        self._script: Any = self._client.register_script(_GCRA_SCRIPT)
        self._prefix = prefix

    def hit(self, key: str, rate: Rate, *, what: str) -> None:
        """Count one event for ``key`` or raise :class:`RateLimitedError`."""
        wait = int(
            self._script(
                keys=[self._prefix + key], args=[rate.interval_ms, rate.window_seconds * 1000]
            )
        )
        if wait > 0:
            raise _refuse(what, rate, wait)

    def reset(self, key: str) -> None:
        """Forget ``key``."""
        self._client.delete(self._prefix + key)

    def ping(self) -> None:
        """Raise :class:`ConfigurationError` when the Redis server does not answer."""
        import redis

        try:
            self._client.ping()
        except redis.RedisError as exc:
            raise ConfigurationError(f"Redis for rate limits does not answer: {exc}") from exc

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


def make_rate_limiter(redis_url: str | None) -> InProcessRateLimiter | RedisRateLimiter:
    """The limiter for the settings: Redis when ``redis_url`` is set, else in-process."""
    if redis_url:
        limiter = RedisRateLimiter(redis_url)
        limiter.ping()
        return limiter
    return InProcessRateLimiter()
