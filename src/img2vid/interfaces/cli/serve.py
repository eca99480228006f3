"""`img2vid serve`: the WebUI and REST API over the job queue, with its flags and token."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from img2vid.core.config import Settings
from img2vid.core.errors import InputError
from img2vid.core.version import __version__
from img2vid.interfaces.cli.command import add_command


def add_serve_parser(sub: argparse._SubParsersAction) -> None:
    """Register `serve` on the CLI's subcommands."""
    p = add_command(sub, "serve", _serve)
    p.add_argument("--host", help="address to listen on (default 127.0.0.1: this machine "
                   "only; 0.0.0.0 for the network, with --token)")
    p.add_argument("--port", type=int, help="port, 1 to 65535 (default 7860)")
    token = p.add_mutually_exclusive_group()
    token.add_argument("--token", help="bearer token every API call and the UI login must "
                       "give. Other users of this machine can see it in `ps`: prefer "
                       "--token-file or IMG2VID_SERVER__TOKEN")
    token.add_argument("--token-file", metavar="PATH", help="read the token from this file "
                       "(its first line)")
    p.add_argument("--workers", type=int, help="camera-engine jobs run at once on the CPU, "
                   "1 to 64 (diffusion jobs always run one at a time per GPU)")
    p.add_argument("--devices", type=lambda text: [d.strip() for d in text.split(",")],
                   help="devices for diffusion jobs, one job at a time each, e.g. "
                   "cuda:0,cuda:1 (default: models.devices in the config, else every CUDA GPU)")


def _read_token(path: str) -> str:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--token-file: cannot read {path}: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    token = lines[0].strip() if lines else ""
    if not token:
        raise InputError(f"--token-file: {path} is empty; put the token on its first line")
    return token


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    """WebUI and REST API on one port, with a persistent job queue.

    Serve the WebUI at /, the REST API at /api/v1 and its docs at /docs. Jobs wait in a
    queue stored beside the outputs and survive restarts. Options override the config's
    server section.
    """
    from pydantic import ValidationError

    from img2vid.core.config import ModelSettings, ServerSettings
    from img2vid.core.validation import one_line

    overrides = {k: getattr(args, k) for k in ("host", "port", "token", "workers")
                 if getattr(args, k) is not None}
    if args.token_file:
        overrides["token"] = _read_token(args.token_file)
    models = settings.models.model_dump()
    if args.devices is not None:
        models["devices"] = args.devices
    try:
        server = ServerSettings.model_validate({**settings.server.model_dump(), **overrides})
        models = ModelSettings.model_validate(models)
    except ValidationError as exc:
        model = ServerSettings if exc.title == ServerSettings.__name__ else ModelSettings
        raise InputError(one_line(exc, model, values=False, key_prefix="--")) from None
    settings = settings.model_copy(update={"server": server, "models": models})
    from img2vid.core.extras import require

    require("server", "img2vid serve")
    from img2vid.interfaces.server.run import is_loopback, prepare

    service = prepare(settings)
    log_file = next((h.baseFilename for h in logging.getLogger().handlers
                     if isinstance(h, logging.FileHandler)), None)
    print(f"img2vid {__version__} is serving:")
    for name, url in service.urls().items():
        print(f"  {name + ':':<10} {url}")
    print(f"  outputs:   {settings.output.directory.resolve()}")
    if log_file:
        print(f"  log:       {log_file}")
    print("Press Ctrl-C to stop.", flush=True)
    if not is_loopback(server.host) and not server.token:
        print(f"img2vid: warning: listening on {server.host} without a token: anyone who can "
              "reach this machine can use the server; set --token", file=sys.stderr, flush=True)
    return service.run()
