"""Bearer-token check for the API (constant-time) and the body-size bound for every request."""

from __future__ import annotations

import hmac
import json

from fastapi import HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

bearer = HTTPBearer(auto_error=False, description="the server token (--token or "
                    "server.token); required only when one is set")


def token_matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


async def require_token(request: Request) -> None:
    """FastAPI dependency: with a token configured, every API call must present it."""
    expected: str | None = request.app.state.settings.server.token
    if not expected:
        return
    credentials: HTTPAuthorizationCredentials | None = await bearer(request)
    if credentials is None or not token_matches(credentials.credentials, expected):
        raise HTTPException(401, "missing or wrong token: send 'Authorization: Bearer <token>'",
                            headers={"WWW-Authenticate": "Bearer"})


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413, whether or not they declare a length.

    The declared Content-Length is checked before anything is read; chunked bodies are
    counted as they stream and cut off at the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _reply(send, 400, "invalid Content-Length header")
                return
            if int(declared) > self.max_bytes:
                await _reply(send, 413, self._message())
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _reply(send, 413, self._message())

    def _message(self) -> str:
        return (f"request body over {self.max_bytes / 2**20:.0f} MB; the server's upload limit "
                "is server.max_upload_mb")


async def _reply(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
