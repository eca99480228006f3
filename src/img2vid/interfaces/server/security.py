"""Bearer-token check for the API, compared in constant time."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

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
