"""Credentials for requests: an API key, or a token that expires and is refreshed.

Our own small objects, not an HTTP library's auth hook: they say which headers (or query
parameters) a request carries, so any HTTP stack can send them. One ``Auth`` is shared by every
worker of a run; a refresh happens once for all of them (single flight, under a lock):

- before a token expires (within a margin of its expiry, at most half its lifetime), and
- after a 401 on the current token. Workers whose requests failed with the same token wait
  for that one refresh and resend with the new token. A 401 on a token that was itself
  refreshed after a 401, with no request accepted in between, is the second 401 in a row:
  ``rejected`` returns None and the caller keeps the 401 (a run-stopping outcome).

The refresher may be synchronous and slow (google-auth's is): it runs in a worker thread, off
the event loop. It raises ``CredentialsFailed`` for a failure the user must fix; that failure
sticks (every worker gets it, without a refresh of its own).

Secrets never reach a repr, a str or an exception: ``Token`` and ``Credentials`` print
redacted, and ``CredentialsFailed`` carries only the credential's source.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Protocol

import anyio

from pipeline.core.config import ApiKey, AuthStyle

_EMPTY: Mapping[str, str] = MappingProxyType({})


class Credentials:
    """What one request carries to authenticate: headers and query parameters.

    ``generation`` numbers the credential within its ``Auth``: a 401 names the generation it
    met, so a refresh another worker already made is not made again.
    """

    __slots__ = ("generation", "headers", "params")

    def __init__(
        self,
        headers: Mapping[str, str] = _EMPTY,
        params: Mapping[str, str] = _EMPTY,
        generation: int = 0,
    ) -> None:
        self.headers = MappingProxyType(dict(headers))
        self.params = MappingProxyType(dict(params))
        self.generation = generation

    def __repr__(self) -> str:
        names = sorted([*self.headers, *(f"?{p}" for p in self.params)])
        return f"Credentials(<redacted: {', '.join(names)}>, generation={self.generation})"

    __str__ = __repr__


class CredentialsFailed(Exception):
    """Credentials could not be had (a refresh failed, none were found). The message says
    where they come from and how to fix it; it never holds a secret."""


class Auth(Protocol):
    """Gives each request its credentials; refreshes them once for all workers."""

    @property
    def source(self) -> str:
        """Where the credential comes from (``GEMINI_API_KEY``, a file's path): printable."""
        ...

    async def credentials(self) -> Credentials:
        """The credentials to send now; raises ``CredentialsFailed``."""
        ...

    async def rejected(self, used: Credentials) -> Credentials | None:
        """A request carrying ``used`` got a 401: fresh credentials to resend it with, or None
        when refreshing cannot help (a key; a second 401 in a row). Raises
        ``CredentialsFailed``."""
        ...

    def accepted(self, used: Credentials) -> None:
        """A request carrying ``used`` was not refused for its credentials."""
        ...


class ApiKeyAuth:
    """A fixed API key, sent as ``x-goog-api-key``, a Bearer token or ``?key=``; or nothing
    (a local server that takes no key). A 401 cannot be refreshed away."""

    __slots__ = ("_credentials", "source")

    def __init__(self, key: ApiKey | None, style: AuthStyle = AuthStyle.HEADER) -> None:
        self.source = f"the key from {key.source}" if key else "no API key"
        if key is None:
            self._credentials = Credentials()
        elif style is AuthStyle.BEARER:
            self._credentials = Credentials({"authorization": f"Bearer {key.reveal()}"})
        elif style is AuthStyle.QUERY:
            self._credentials = Credentials(params={"key": key.reveal()})
        else:
            self._credentials = Credentials({"x-goog-api-key": key.reveal()})

    async def credentials(self) -> Credentials:
        return self._credentials

    async def rejected(self, used: Credentials) -> Credentials | None:
        return None

    def accepted(self, used: Credentials) -> None:
        pass

    def __repr__(self) -> str:
        return f"ApiKeyAuth(source={self.source!r})"


class Token:
    """An access token and when it expires (Unix seconds; None: it does not)."""

    __slots__ = ("_value", "expires_at")

    def __init__(self, value: str, expires_at: float | None) -> None:
        self._value = value
        self.expires_at = expires_at

    def reveal(self) -> str:
        """The token itself: only for the request's header."""
        return self._value

    def __repr__(self) -> str:
        return f"Token(<redacted>, expires_at={self.expires_at!r})"

    __str__ = __repr__


class TokenAuth:
    """A token from ``refresh`` (sync, run in a thread), sent as ``authorization: Bearer``.

    ``margin_s``: how long before its expiry a token is replaced (a request must not arrive
    with a token that expired on the way), at most half the token's lifetime. ``now``: the
    wall clock (Unix seconds), injected by tests.
    """

    def __init__(
        self,
        refresh: Callable[[], Token],
        *,
        source: str,
        margin_s: float = 300.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.refreshes = 0  # refreshes made: one per expiry or per 401, however many workers
        self._refresh = refresh
        self._margin_s = margin_s
        self._now = now
        self._lock = anyio.Lock()
        self._current: Credentials | None = None
        self._renew_at = 0.0  # when the current token is due for a refresh
        self._generation = 0
        # A generation refreshed after a 401 and not yet accepted: a 401 on it is the second
        # in a row, which a refresh did not cure.
        self._unconfirmed: int | None = None
        self._failed: CredentialsFailed | None = None

    async def credentials(self) -> Credentials:
        current = self._current
        if current is not None and self._now() < self._renew_at:
            return current  # the common path: no lock, no await
        async with self._lock:
            current = self._current  # another worker may have refreshed while this waited
            if current is not None and self._now() < self._renew_at:
                return current
            return await self._renew()

    async def rejected(self, used: Credentials) -> Credentials | None:
        async with self._lock:
            current = self._current
            if current is not None and current.generation > used.generation:
                return current  # refreshed since ``used`` was handed out: resend with this one
            if self._unconfirmed == used.generation:
                return None  # the second 401 in a row
            fresh = await self._renew()
            self._unconfirmed = fresh.generation
            return fresh

    def accepted(self, used: Credentials) -> None:
        if used.generation == self._unconfirmed:
            self._unconfirmed = None

    async def _renew(self) -> Credentials:
        """A new token; called with the lock held, so it runs once for all workers."""
        if self._failed is not None:
            raise self._failed
        try:
            token = await anyio.to_thread.run_sync(self._refresh)
        except CredentialsFailed as e:
            self._failed = e
            raise
        self.refreshes += 1
        self._generation += 1
        now = self._now()
        if token.expires_at is None:
            self._renew_at = float("inf")
        else:
            lifetime = max(0.0, token.expires_at - now)
            self._renew_at = token.expires_at - min(self._margin_s, lifetime / 2)
        header = {"authorization": f"Bearer {token.reveal()}"}
        self._current = Credentials(header, generation=self._generation)
        return self._current

    def __repr__(self) -> str:
        return f"TokenAuth(source={self.source!r}, refreshes={self.refreshes})"
