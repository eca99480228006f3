"""The photos clients upload through the WebUI before pressing Generate ("parked" in Gradio's
upload cache): the only files the UI's handlers will open, bounded per client, and removed as
soon as a job has taken its own copies (or was refused)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from img2vid.core.errors import InputError

log = logging.getLogger(__name__)

UPLOAD_PATH = "/gradio_api/upload"
NOT_UPLOADED = ("a photo was not uploaded through this page (or was already used and "
                "removed); upload it again")


@dataclass
class _Parked:
    client: str
    size: int
    since: float
    in_use: int = 0


class Parking:
    """Uploaded files by resolved path, with the client that sent them.

    A client's parked bytes stay under `limit`: the oldest files no job is using make room
    for new ones; past that the upload is refused (413).
    """

    def __init__(self, root: str | os.PathLike[str], limit: int) -> None:
        self.root = Path(root).resolve()
        self.limit = limit
        self._files: dict[Path, _Parked] = {}
        self._lock = threading.RLock()  # claim() calls verify()

    def admit(self, client: str, incoming: int) -> str | None:
        """Make room for `incoming` bytes from `client`; the refusal text if there is none."""
        with self._lock:
            mine = sorted(((p, f) for p, f in self._files.items() if f.client == client),
                          key=lambda item: item[1].since)
            total = sum(f.size for _, f in mine)
            for path, parked in mine:
                if total + incoming <= self.limit:
                    break
                if not parked.in_use:
                    total -= parked.size
                    self._forget(path)
            if total + incoming <= self.limit:
                return None
        mb = self.limit / 1024**2
        return (f"too many photos uploaded and not yet used: the server keeps at most "
                f"{mb:g} MB per client (twice server.max_upload_mb); wait for the running "
                "job to end")

    def record(self, client: str, paths: list[str]) -> None:
        with self._lock:
            for name in paths:
                path = Path(name).resolve()
                if path.is_relative_to(self.root) and path.is_file():
                    self._files[path] = _Parked(client, path.stat().st_size, time.monotonic())

    def claim(self, names: list[str]) -> list[Path]:
        """The parked files behind `names`, marked in use; InputError (one line, the same
        whatever the reason) for anything this server did not receive as an upload."""
        with self._lock:
            paths = self.verify(names)
            for path in paths:
                self._files[path].in_use += 1
            return paths

    def verify(self, names: list[str]) -> list[Path]:
        """The parked files behind `names`, left as they are (a dry run reads their headers);
        InputError as in `claim` for anything else."""
        with self._lock:
            paths = []
            for name in names:
                path = Path(name).resolve()  # symlinks followed, ../ gone
                if not path.is_relative_to(self.root) or path not in self._files:
                    raise InputError(NOT_UPLOADED)
                paths.append(path)
            return paths

    def release(self, paths: list[Path]) -> None:
        """A job has its own copies of these (or was refused): remove the files."""
        with self._lock:
            for path in paths:
                parked = self._files.get(path)
                if parked is not None:
                    parked.in_use -= 1
                    if parked.in_use <= 0:
                        self._forget(path)

    def parked(self, client: str) -> dict[Path, int]:
        """The files `client` has parked, with their sizes."""
        with self._lock:
            return {p: f.size for p, f in self._files.items() if f.client == client}

    def _forget(self, path: Path) -> None:
        del self._files[path]
        try:
            path.unlink(missing_ok=True)
            if path.parent != self.root and not any(path.parent.iterdir()):
                path.parent.rmdir()  # Gradio makes one folder per upload
        except OSError as exc:
            log.debug("could not remove the upload %s: %s", path, exc)


class ParkingGate:
    """ASGI middleware on the UI's upload route: bounds what each client parks and records
    what it parked."""

    def __init__(self, app: ASGIApp, *, parking: Parking) -> None:
        self.app = app
        self.parking = parking

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "POST"
                or scope["path"] != UPLOAD_PATH):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("?", 0))[0]
        declared = Headers(scope=scope).get("content-length", "0")
        refusal = self.parking.admit(client, int(declared) if declared.isdigit() else 0)
        if refusal:
            body = refusal.encode()
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        status = 0
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status == 200:
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    try:
                        paths = json.loads(b"".join(chunks))
                        self.parking.record(client, [p for p in paths if isinstance(p, str)])
                    except (ValueError, TypeError):
                        log.warning("unexpected answer from the upload route; not recorded")
            await send(message)

        await self.app(scope, receive, capture)
