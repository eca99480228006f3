"""How a command joins the CLI: its parser, documented by its handler's docstring."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable

from img2vid.core.config import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def add_command(sub: argparse._SubParsersAction, name: str,
                handler: Handler) -> argparse.ArgumentParser:
    """Register `img2vid NAME` to run `handler`. As in click, the handler's docstring is the
    command's help: its first line in `img2vid --help`, all of it in `img2vid NAME --help`."""
    text = inspect.getdoc(handler) or ""
    p = sub.add_parser(name, help=text.split("\n", 1)[0].rstrip("."), description=text)
    p.set_defaults(handler=handler)
    return p
