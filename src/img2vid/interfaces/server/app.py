"""The FastAPI app: REST API at /api/v1, /healthz, OpenAPI at /docs, the Gradio UI at /."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.routing import Mount

from img2vid.core.config import Settings
from img2vid.core.version import __version__
from img2vid.execution.jobqueue import JobQueue
from img2vid.interfaces.server import api
from img2vid.interfaces.server.security import require_token

log = logging.getLogger(__name__)

# Room for multipart boundaries and base64's 4/3 growth on top of the images themselves.
BODY_OVERHEAD = 1 << 20


def create_app(settings: Settings, queue: JobQueue, *, ui: bool = True,
               shutdown_grace: float = 5.0) -> FastAPI:
    """The whole service. The queue's workers start with the app and stop with it."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        queue.start()
        try:
            yield
        finally:
            # Blocking joins belong off the event loop.
            await asyncio.to_thread(queue.stop, shutdown_grace)

    limit_mb = settings.server.max_upload_mb
    # Every request body is bounded, the UI's uploads included: declared lengths are refused
    # before reading, chunked bodies once they pass the bound.
    max_body = int(limit_mb * 1024 * 1024 * 4 / 3) + BODY_OVERHEAD
    app = FastAPI(title="img2vid", version=__version__, lifespan=lifespan,
                  max_body_size=max_body,
                  description="Turn still photos into short videos. Jobs are queued and run "
                  "one at a time per GPU; poll a job, then download its video.")
    app.state.settings = settings
    app.state.queue = queue
    app.state.shutdown_hooks = []

    @app.exception_handler(413)
    async def _too_large(_: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail
        if detail == "Content Too Large":  # Starlette's body bound: say what the limit is
            detail = (f"request body too large: the server takes at most {limit_mb:g} MB of "
                      "images per request (server.max_upload_mb)")
        return JSONResponse({"detail": detail}, status_code=413)

    app.include_router(api.router, prefix="/api/v1", dependencies=[Depends(require_token)])

    @app.get("/healthz", tags=["health"], summary="Health")
    def healthz() -> JSONResponse:
        return api.health(queue)

    if settings.server.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.server.cors_origins,
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "Range"],
                           expose_headers=["Content-Range", "Accept-Ranges", "Retry-After"])
    if ui:
        _mount_ui(app, settings, queue)
    return app


def _mount_ui(app: FastAPI, settings: Settings, queue: JobQueue) -> None:
    # Gradio reads these when imported: no telemetry, no update checks, nothing off-machine.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    from img2vid.interfaces.server.webui import WebUI

    token = settings.server.token
    blocks = WebUI(settings, queue).build()
    output_dir = str(settings.output.directory.resolve())
    gr.mount_gradio_app(
        app, blocks, path="/",
        auth=(lambda _user, password: _matches(password, token)) if token else None,
        auth_message="This server needs its token: enter it as the password "
                     "(any user name)." if token else None,
        allowed_paths=[output_dir],
        blocked_paths=[str(queue.directory.resolve())],
        max_file_size=int(settings.server.max_upload_mb * 1024 * 1024),
        footer_links=["api"], run_history=False, ssr_mode=False, mcp_server=False,
        show_error=True)
    gradio_app = next(r.app for r in app.routes if isinstance(r, Mount) and r.path == "")
    # Open browser tabs hold a heartbeat stream; ending it lets the server stop promptly.
    app.state.shutdown_hooks.append(gradio_app.stop_event.set)


def _matches(given: str, expected: str) -> bool:
    from img2vid.interfaces.server.security import token_matches

    return token_matches(given, expected)
