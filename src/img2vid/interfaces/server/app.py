"""The FastAPI app: REST API at /api/v1, /healthz, OpenAPI at /docs, the Gradio UI at /."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.routing import Mount

from img2vid.core.config import Settings
from img2vid.core.version import __version__
from img2vid.execution.jobqueue import JobQueue
from img2vid.interfaces.server import api, shown
from img2vid.interfaces.server.guard import Guard
from img2vid.interfaces.server.parking import Parking, ParkingGate
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
                  max_body_size=max_body, docs_url=None, redoc_url=None,
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

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # One line, as every other error, and as the 422 schema the API declares says.
        return JSONResponse({"detail": shown.describe_validation(exc.errors())},
                            status_code=422)

    app.include_router(api.router, prefix="/api/v1", dependencies=[Depends(require_token)])

    @app.get("/healthz", tags=["health"], summary="Health")
    def healthz() -> JSONResponse:
        return api.health(queue)

    _add_docs(app)

    # Always present, even with no origins listed: Gradio then leaves CORS to us instead of
    # echoing any localhost origin with credentials.
    app.add_middleware(CORSMiddleware, allow_origins=settings.server.cors_origins,
                       allow_methods=["GET", "POST", "DELETE"],
                       allow_headers=["Authorization", "Content-Type", "Range"],
                       expose_headers=["Content-Range", "Accept-Ranges", "Retry-After"])
    if ui:
        _mount_ui(app, settings, queue)
    app.add_middleware(Guard, server=settings.server)  # outermost: checked before anything
    return app


def _add_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from files installed with the server (swagger-ui-bundle-v2), not
    a CDN: the page works offline and the browser fetches nothing off this machine."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from starlette.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs/assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="img2vid API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png")


def _mount_ui(app: FastAPI, settings: Settings, queue: JobQueue) -> None:
    # Gradio reads these when imported: no telemetry, no update checks, nothing off-machine.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    # Uploads go to a private (0700) cache of this process unless the user names one: Gradio's
    # default /tmp/gradio is shared by every Gradio app on the machine and names a file by its
    # content, so another server removing its parked copy of the same photo would pull this
    # one's from under it (and other local users could read the photos).
    if not os.environ.get("GRADIO_TEMP_DIR"):
        cache = tempfile.mkdtemp(prefix="img2vid-gradio-")
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
        os.environ["GRADIO_TEMP_DIR"] = cache
    import gradio as gr
    from gradio.utils import get_upload_folder

    from img2vid.interfaces.server.webui import WebUI

    token = settings.server.token
    upload_limit = int(settings.server.max_upload_mb * 1024 * 1024)
    parking = Parking(get_upload_folder(), limit=2 * upload_limit)
    app.state.parking = parking
    blocks = WebUI(settings, queue, parking).build()
    gr.mount_gradio_app(
        app, blocks, path="/",
        auth=(lambda _user, password: _matches(password, token)) if token else None,
        auth_message="This server needs its token: enter it as the password "
                     "(any user name)." if token else None,
        # Nothing from the output folder is served (sidecars name server folders); the player
        # gets a copy of the video in Gradio's cache.
        allowed_paths=[],
        blocked_paths=[str(settings.output.directory.resolve()), str(queue.directory)],
        max_file_size=upload_limit,
        footer_links=["api"], run_history=False, ssr_mode=False, mcp_server=False,
        show_error=True)
    # Gradio checks that input files were uploaded only once `launch()` has run, which
    # mounting skips; our handler checks too (Parking.claim), so an upgrade cannot reopen it.
    blocks.has_launched = True
    app.add_middleware(ParkingGate, parking=parking)
    gradio_app = next(r.app for r in app.routes if isinstance(r, Mount) and r.path == "")
    # Open browser tabs hold a heartbeat stream; ending it lets the server stop promptly.
    app.state.shutdown_hooks.append(gradio_app.stop_event.set)


def _matches(given: str, expected: str) -> bool:
    from img2vid.interfaces.server.security import token_matches

    return token_matches(given, expected)
