"""The service's front door: the Host a request names (DNS rebinding), the Origin a browser
sends with a state-changing call (cross-site requests), wrong tokens per client (guessing),
and the login cookie's SameSite. One ASGI middleware around the whole app, the UI included."""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from img2vid.core.config import ServerSettings
from img2vid.interfaces.server.security import token_matches

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})
LOGIN_PATH = "/login"
# Wrong tokens (REST 401s, failed UI logins) one client may send per window.
MAX_FAILURES = 20
FAILURE_WINDOW_S = 60.0
SAMESITE = re.compile(r";\s*samesite=[a-z]+", re.IGNORECASE)


def split_host(host: str) -> str:
    """The name or address of a Host header, without the port or IPv6 brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


class HostPolicy:
    """Which Host headers this server answers. A rebinding attack needs a DNS name the
    attacker controls, so addresses are safe to accept; names must be this machine's."""

    def __init__(self, server: ServerSettings) -> None:
        self.any_host = "*" in server.allowed_hosts
        self.names = {"localhost", *(split_host(h) for h in server.allowed_hosts)}
        self.bind_all = server.host in WILDCARD_BINDS
        self.bind_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
        try:
            self.bind_ip = ipaddress.ip_address(server.host)
        except ValueError:
            if not self.bind_all:
                self.names.add(split_host(server.host))  # --host my-box.lan
        if self.bind_all:  # reachable from the network: by this machine's own names too
            self.names |= {socket.gethostname().lower(), socket.getfqdn().lower()}

    def allows(self, host_header: str) -> bool:
        if self.any_host:
            return True
        host = split_host(host_header)
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return host in self.names or any(
                n.startswith(".") and host.endswith(n) for n in self.names)
        return ip.is_loopback or self.bind_all or ip == self.bind_ip

    def describe(self) -> str:
        names = sorted(n for n in self.names if n)
        return ", ".join(names) + " and " + ("any IP address" if self.bind_all else
                                             "loopback addresses")


class FailedLogins:
    """Per client address: the times of its recent wrong tokens."""

    def __init__(self, limit: int = MAX_FAILURES, window: float = FAILURE_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> int:
        """0 if `client` may try again now, else the seconds until it may."""
        with self._lock:
            times = self._recent(client)
            if len(times) < self.limit:
                return 0
            return max(1, int(times[0] + self.window - self.clock()) + 1)

    def record(self, client: str) -> None:
        with self._lock:
            self._recent(client).append(self.clock())
            if len(self._seen) > 10_000:  # bounded memory under a spray of addresses
                for key in [k for k, v in self._seen.items() if not v]:
                    del self._seen[key]

    def _recent(self, client: str) -> deque[float]:
        times = self._seen.setdefault(client, deque())
        while times and times[0] < self.clock() - self.window:
            times.popleft()
        return times


class Guard:
    """ASGI middleware: refuses foreign Hosts (400) and cross-site state changes (403), slows
    down token guessing (429), and makes every cookie SameSite=Strict."""

    def __init__(self, app: ASGIApp, *, server: ServerSettings) -> None:
        self.app = app
        self.server = server
        self.hosts = HostPolicy(server)
        self.origins = {o.rstrip("/").lower() for o in server.cors_origins}
        self.failures = FailedLogins()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if not self.hosts.allows(host):
            await _refuse(send, 400, f"this server does not answer to the host name "
                          f"{split_host(host)!r} (it answers to {self.hosts.describe()}); "
                          "add the name to server.allowed_hosts if clients use it")
            return
        method = scope["method"]
        origin = headers.get("origin")
        if (method not in SAFE_METHODS and origin is not None
                and not self._own_or_allowed(origin, host) and not self._has_token(headers)):
            await _refuse(send, 403, f"cross-site request from {origin} refused: only this "
                          "server's own pages may change anything; list other origins in "
                          "server.cors_origins")
            return
        client = (scope.get("client") or ("?", 0))[0]
        login = method == "POST" and scope["path"] == LOGIN_PATH
        guessing = login or "authorization" in headers  # a request without one is no guess
        if guessing:
            wait = self.failures.retry_after(client)
            if wait:
                await _refuse(send, 429, f"too many wrong tokens from {client}; try again in "
                              f"{wait} s", {"Retry-After": str(wait)})
                return

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                if guessing and (status == 401 or (login and status == 400)):
                    self.failures.record(client)
                _strict_cookies(message)
            await send(message)

        await self.app(scope, receive, watch)

    def _own_or_allowed(self, origin: str, host: str) -> bool:
        origin = origin.rstrip("/").lower()
        netloc = origin.partition("://")[2]
        return bool(netloc) and netloc == host.strip().lower() or origin in self.origins

    def _has_token(self, headers: Headers) -> bool:
        expected = self.server.token
        scheme, _, given = headers.get("authorization", "").partition(" ")
        return bool(expected) and scheme.lower() == "bearer" and token_matches(given, expected)


def _strict_cookies(message: Message) -> None:
    """The login cookie never rides along on a request another site starts."""
    headers = MutableHeaders(scope=message)
    cookies = headers.getlist("set-cookie")
    if not cookies:
        return
    del headers["set-cookie"]
    for cookie in cookies:
        headers.append("set-cookie", SAMESITE.sub("", cookie) + "; SameSite=strict")


async def _refuse(send: Send, status: int, detail: str,
                  extra: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json"),
                                          (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (extra or {}).items()]
    start: dict[str, Any] = {"type": "http.response.start", "status": status,
                             "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body})
