"""`img2vid models` (list the diffusion models, their size and whether each is cached) and
`img2vid models download NAME` (fetch one into the Hugging Face cache)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from img2vid.core.config import Settings
from img2vid.core.errors import InputError
from img2vid.interfaces.cli.command import add_command

# The registry is imported inside the handlers: building the CLI parser (and `--help`) stays
# free of numpy/PIL/huggingface_hub imports.

def _download_rife(settings: Settings) -> Path:
    from img2vid.media.models_cache import cache_dir, download_rife

    return download_rife(cache_dir(settings))


def _download_adain(settings: Settings) -> Path:
    from img2vid.media.models_cache import cache_dir, download_adain

    return download_adain(cache_dir(settings))


def _download_depth(name: str) -> Callable[[Settings], Path]:
    def fetch(settings: Settings) -> Path:
        from img2vid.engines.parallax.depth import resolve_depth_model

        return resolve_depth_model(name, settings, download=True).path

    return fetch


# Downloads that are not diffusers pipelines, by name -> function(settings) -> path.
EXTRA_DOWNLOADS: dict[str, Callable[[Settings], Path]] = {
    "rife": _download_rife,
    "adain": _download_adain,  # --style's weights
    # the parallax engine's depth model (a transformers repo; its registry lives with it)
    "depth-anything-v2-small": _download_depth("depth-anything-v2-small"),
}


def add_models_command(sub: argparse._SubParsersAction) -> None:
    """Register `models [list|download NAME]` on the CLI's subcommand parser."""
    p = add_command(sub, "models", list_models)
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    actions = p.add_subparsers(dest="models_action", metavar="ACTION",
                               parser_class=type(p))
    listing = actions.add_parser("list", help="list the models (the default)")
    # SUPPRESS: `models --json list` keeps the parent's --json instead of resetting it
    listing.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                         help="print the list as JSON")
    listing.set_defaults(handler=list_models)
    download = actions.add_parser("download", help="download a model (needs internet)")
    download.add_argument("name", metavar="NAME",
                          help="a model name from `img2vid models`, or rife / adain (the "
                          "weights of --interpolator rife / --style)")
    download.set_defaults(handler=download_model)
    update = actions.add_parser("update", help="move a model to the hub's newest commit "
                                "(needs internet); runs keep the commit first downloaded "
                                "until then")
    update.add_argument("name", metavar="NAME", help="a model name from `img2vid models`")
    update.set_defaults(handler=update_model)


def list_models(args: argparse.Namespace, settings: Settings) -> int:
    """List diffusion and depth models (download size, cached?) or download one.

    List the diffusion models and the parallax engine's depth model img2vid knows, or
    download one into the Hugging Face cache (HF_HOME).
    """
    from img2vid.core.extras import require
    from img2vid.engines.diffusion.installed import model_rows

    require("diffusion", "img2vid models")
    rows = model_rows(settings)
    if getattr(args, "json", False):
        print(json.dumps(rows, indent=2))
        return 0
    table = [("MODEL", "DOWNLOAD", "CACHED", "HUB ID", "")]
    for row in rows:
        size = f"~{row['download_gb']:g} GB"
        cached = "local" if row["local_dir"] else ("yes" if row["cached"] else "no")
        if row["size_on_disk_bytes"] is not None:
            cached += f" ({_size(row['size_on_disk_bytes'])} on disk)"
        table.append((row["name"], size, cached, row["hub_id"], row["description"]))
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
    print("\nDownload one with `img2vid models download NAME`, or pass --model /path/to/folder "
          "(a diffusers folder with model_index.json).")
    return 0


def _size(n: int) -> str:
    return f"{n / 1024**3:.1f} GB" if n >= 1024**3 else f"{n / 1024**2:.1f} MB"


def update_model(args: argparse.Namespace, settings: Settings) -> int:
    from img2vid.engines.diffusion.loading import RevisionLock, registered
    from img2vid.engines.diffusion.loading import download_model as fetch

    spec = registered(args.name.strip().lower())
    before = RevisionLock(settings).get(spec.hub_id)
    resolved = fetch(spec.name, settings, update=True)
    moved = "unchanged" if before == resolved.revision else f"was {before or 'not pinned'}"
    print(f"{spec.name}: {spec.hub_id}@{resolved.revision} ({moved})")
    return 0


def download_model(args: argparse.Namespace, settings: Settings) -> int:
    from img2vid.engines.diffusion.registry import MODELS

    name = args.name.strip().lower()
    if name in EXTRA_DOWNLOADS:
        print(EXTRA_DOWNLOADS[name](settings))
        return 0
    if name not in MODELS:
        raise InputError(f"unknown model {args.name!r}; known: "
                         + ", ".join([*MODELS, *EXTRA_DOWNLOADS]))
    from img2vid.core.extras import require

    require("diffusion", f"img2vid models download {name}")
    from img2vid.engines.diffusion.loading import download_model as fetch

    resolved = fetch(name, settings)
    print(resolved.path)
    return 0
