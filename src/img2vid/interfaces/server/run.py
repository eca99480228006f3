"""Running the service: bind the port before anything starts, then uvicorn with a clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from img2vid.core.config import Settings
from img2vid.core.errors import InputError
from img2vid.engines.base import EngineFactory
from img2vid.execution.jobqueue import JobQueue
from img2vid.interfaces.server.app import create_app
from img2vid.media import outputs

log = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0
# Connections and requests at once; past it uvicorn answers 503. Each open UI tab holds one
# or two (its progress stream), so this is hundreds of users for a local tool.
CONCURRENCY_LIMIT = 256


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, or one clear InputError (port in use, bad address...)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise InputError(f"cannot use host {host!r}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise InputError(f"port {port} on {host} is already in use; stop the other server "
                             "or choose another port with --port") from None
        if exc.errno == errno.EACCES:
            raise InputError(f"no permission to listen on port {port}; use a port above "
                             "1023") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise InputError(f"{host} is not an address of this machine; use 127.0.0.1 or "
                             "0.0.0.0") from None
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Server(uvicorn.Server):
    """uvicorn, but a signal first tells the queue to stop taking jobs (a second one stops
    the running job at once), open UI streams are ended so connections can close, and the
    process then exits with 0 instead of re-raising the signal."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, queue: JobQueue) -> None:
        super().__init__(config)
        self.app = app
        self.queue = queue

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        again = self.should_exit
        log.warning("signal %s: %s", signal.Signals(sig).name,
                    "stopping the running job now" if again else
                    "no new jobs; the running job may finish, then the server stops")
        self.queue.close(interrupt=again)
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.queue.close()
        for hook in self.app.state.shutdown_hooks:
            hook()
        await super().shutdown(sockets)


class TimedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with read deadlines: a client gets `header_timeout`
    seconds to send a request's headers (dripping bytes does not extend it) and may pause at
    most `body_timeout` seconds while sending a body. A slow client cannot hold a
    connection open indefinitely."""

    header_timeout = HEADER_TIMEOUT_S
    body_timeout = BODY_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        self._phase = ""
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._arm(None)
        super().connection_lost(exc)

    def _watch(self) -> None:
        state = self.conn.their_state
        if state is h11.IDLE:  # waiting for headers: one deadline from the start
            if self._phase != "headers":
                self._phase = "headers"
                self._arm(self.header_timeout)
        elif state is h11.SEND_BODY:  # each piece of the body renews it
            self._phase = "body"
            self._arm(self.body_timeout)
        else:  # the request is in: the app may take its time (progress streams)
            self._phase = "app"
            self._arm(None)

    def _arm(self, seconds: float | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None if seconds is None else self.loop.call_later(seconds, self._expire)

    def _expire(self) -> None:
        if not self.transport.is_closing():
            log.info("closing a connection from %s: too slow sending its %s",
                     self.client[0] if self.client else "?", "headers"
                     if self._phase == "headers" else "body")
            self.transport.close()


def make_server(app: FastAPI, queue: JobQueue, *, header_timeout: float = HEADER_TIMEOUT_S,
                body_timeout: float = BODY_TIMEOUT_S,
                limit_concurrency: int = CONCURRENCY_LIMIT) -> Server:
    protocol = type("Protocol", (TimedH11Protocol,), {"header_timeout": header_timeout,
                                                       "body_timeout": body_timeout})
    config = uvicorn.Config(app, log_config=None, timeout_graceful_shutdown=3,
                            server_header=False, lifespan="on", ws="none", http=protocol,
                            limit_concurrency=limit_concurrency, timeout_keep_alive=5,
                            h11_max_incomplete_event_size=64 * 1024)
    return Server(config, app, queue)


@dataclass
class Service:
    """A bound port, the queue and the app, ready to run."""

    settings: Settings
    sock: socket.socket
    queue: JobQueue
    server: Server

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def urls(self) -> dict[str, str]:
        host = self.settings.server.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        base = f"http://{f'[{shown}]' if ':' in shown else shown}:{self.port}"
        return {"WebUI": f"{base}/", "REST API": f"{base}/api/v1",
                "API docs": f"{base}/docs"}

    def run(self) -> int:
        """Serve until Ctrl-C / SIGTERM; 0 after a clean stop."""
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.queue.stop(grace=0.0)  # no-op after a normal shutdown; covers a forced one
            self.sock.close()
        return 0 if self.server.started else 1


def prepare(settings: Settings, *, engine_factory: EngineFactory | None = None) -> Service:
    """Bind the port and open the queue; InputError (exit code 2) if either is taken."""
    sock = bind(settings.server.host, settings.server.port)
    queue = None
    try:
        outputs.ensure_writable(settings.output.directory)
        try:
            queue = JobQueue(settings, engine_factory=engine_factory)
        except OSError as exc:  # read-only drive, no permission
            raise InputError(f"cannot write in the output folder {settings.output.directory}: "
                             f"{exc.strerror}; make it writable or choose another with "
                             "output.directory") from None
        app = create_app(settings, queue, shutdown_grace=settings.server.shutdown_grace_s)
    except BaseException:
        if queue is not None:
            queue.stop()
        sock.close()
        raise
    return Service(settings, sock, queue, make_server(app, queue))
