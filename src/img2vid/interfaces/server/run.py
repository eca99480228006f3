"""Running the service: bind the port before anything starts, then uvicorn with a clean stop."""

from __future__ import annotations

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

import uvicorn
from fastapi import FastAPI

from img2vid.core.config import Settings
from img2vid.core.errors import InputError
from img2vid.engines.base import EngineFactory
from img2vid.execution.jobqueue import JobQueue
from img2vid.interfaces.server.app import create_app

log = logging.getLogger(__name__)


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


def make_server(app: FastAPI, queue: JobQueue) -> Server:
    config = uvicorn.Config(app, log_config=None, timeout_graceful_shutdown=3,
                            server_header=False, lifespan="on", ws="none")
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
        try:
            settings.output.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the output folder {settings.output.directory}: "
                             f"{exc.strerror}") from None
        queue = JobQueue(settings, engine_factory=engine_factory)
        app = create_app(settings, queue, shutdown_grace=settings.server.shutdown_grace_s)
    except BaseException:
        if queue is not None:
            queue.stop()
        sock.close()
        raise
    return Service(settings, sock, queue, make_server(app, queue))
