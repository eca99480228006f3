"""Command line: `img2vid generate | doctor | ...`; flags are generated from GenerationRequest."""

from __future__ import annotations

import argparse
import enum
import json
import logging
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from img2vid.core.config import Settings, load_settings
from img2vid.core.errors import InputError
from img2vid.core.request import PRESET_DESCRIPTIONS, GenerationRequest, build_request, field_range
from img2vid.core.version import __version__
from img2vid.interfaces.cli.bars import BatchBar, ProgressBars
from img2vid.interfaces.cli.command import add_command
from img2vid.interfaces.cli.extend import add_extend_parser
from img2vid.interfaces.cli.interpolate import add_interpolate_parser
from img2vid.interfaces.cli.models import add_models_command
from img2vid.interfaces.cli.serve import add_serve_parser
from img2vid.interfaces.cli.upscale import add_upscale_parser

if TYPE_CHECKING:
    from img2vid.execution.failures import Failure

log = logging.getLogger("img2vid")



class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and still exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --- generate -------------------------------------------------------------------------------

def add_request_arguments(parser: argparse.ArgumentParser, skip: Sequence[str] = ("images",),
                          ) -> None:
    """One --kebab-case flag per GenerationRequest field, typed and documented by the model.

    Values stay strings here; the request validates them, so the CLI, API and UI share
    the same checks and messages.
    """
    group = parser.add_argument_group("generation options (unset values come from --preset)")
    for name, field in GenerationRequest.model_fields.items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        choices = _enum_choices(field.annotation)
        help_text = field.description or ""
        allowed = field_range(name)
        if allowed:
            help_text += f" (range: {allowed})"
        if _is_bool(field.annotation):
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                               default=None, help=help_text)
            continue
        metavar = "{" + ",".join(choices) + "}" if choices else name.upper()
        if typing.get_origin(field.annotation) is tuple:
            group.add_argument(flag, dest=name, default=None, action="append",
                               metavar=metavar, help=help_text)  # repeatable
            continue
        group.add_argument(flag, dest=name, default=None, metavar=metavar, help=help_text)


def request_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The request fields given on the command line (unset ones are left to the preset)."""
    return {name: getattr(args, name) for name in GenerationRequest.model_fields
            if name != "images" and getattr(args, name, None) is not None}


def request_from_args(args: argparse.Namespace, images: Sequence[str]) -> GenerationRequest:
    return build_request(images=tuple(images), **request_fields(args))


def _enum_choices(annotation: Any) -> list[str]:
    for arg in (typing.get_args(annotation) or (annotation,)):
        if isinstance(arg, type) and issubclass(arg, enum.Enum):
            return [member.value for member in arg]
    return []


def _is_bool(annotation: Any) -> bool:
    return annotation is bool or (isinstance(annotation, types.UnionType)
                                  and bool in typing.get_args(annotation))


def _add_generate(sub: argparse._SubParsersAction) -> None:
    presets = "; ".join(f"{p.value}: {d}" for p, d in PRESET_DESCRIPTIONS.items())
    p = add_command(sub, "generate", _generate)
    p.description = f"{p.description} Presets: {presets}"
    p.add_argument("images", nargs="+", metavar="IMAGE", help="input photo(s)")
    p.add_argument("-o", "--output", metavar="PATH", help="output file: its extension picks "
                   "the format (.mp4, .webm, .mkv, .gif; no extension: a folder of PNG frames); "
                   "a folder ending in / (or an existing folder) gets a timestamped name. "
                   "Default: a timestamped name in output.directory. The sidecar is PATH.json")
    p.add_argument("--overwrite", action="store_true", help="replace an existing -o output "
                   "(otherwise that is an error)")
    p.add_argument("--json", action="store_true", help="print the sidecar JSON instead of "
                   "the output path")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--preview", type=Path, metavar="PATH", help="keep a live preview PNG "
                   "here, updated every few denoising steps (diffusion)")
    p.add_argument("--dry-run", action="store_true", help="resolve the model and every value "
                   "(size, frames, steps, dtypes, memory level) and print the plan without "
                   "loading weights or writing a video")
    add_request_arguments(p)


def with_preview(progress: Callable[[Any], None], path: Path) -> Callable[[Any], None]:
    """Pass events on, writing each live preview to `path` (atomically: a viewer polling the
    file never reads half a PNG)."""
    from img2vid.media.images import png_bytes
    from img2vid.media.outputs import write_bytes_atomic

    def report(event: Any) -> None:
        if event.preview is not None:
            write_bytes_atomic(path, png_bytes(event.preview))
        progress(event)

    return report


def _add_extend(sub: argparse._SubParsersAction) -> None:
    add_extend_parser(sub, add_request_arguments, request_fields)


def _generate(args: argparse.Namespace, settings: Settings) -> int:
    """Make a video from one or more photos."""
    from img2vid.execution.pool import EnginePool
    from img2vid.execution.run import run_request

    request = request_from_args(args, args.images)
    if args.preview and not args.preview.parent.is_dir():
        raise InputError(f"--preview {args.preview}: the folder {args.preview.parent} does not "
                         "exist")
    log.info("request: %s", request.summary())
    if args.dry_run:
        from img2vid.execution.plan import describe_plan, plan_request

        plan = plan_request(request, settings)
        print(json.dumps(plan, indent=2) if args.json else "\n".join(describe_plan(plan)))
        return 0
    with ProgressBars(enabled=not args.quiet) as bars:
        progress = with_preview(bars, args.preview) if args.preview else bars
        outcome = run_request(request, settings, EnginePool(settings), output=args.output,
                              progress=progress, label="generate", overwrite=args.overwrite)
    if outcome.result is None:
        assert outcome.failure is not None
        return report_failure(outcome.failure, args.log_path)
    for note in outcome.result.info.notes or []:
        print(f"img2vid: note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(outcome.result.metadata, indent=2))
    else:
        print(outcome.result.output)
    return 0


# --- batch ----------------------------------------------------------------------------------

def _add_batch(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "batch", _batch)
    p.add_argument("input", nargs="?", metavar="INPUT", help="folder of photos, a glob in "
                   "quotes ('shoot/*.jpg'), or a manifest (.csv or .jsonl)")
    p.add_argument("-o", "--output-dir", type=Path, help="folder for the videos and the "
                   "report (default: output.directory from the config)")
    p.add_argument("--workers", type=_positive_int, metavar="N", help="camera-engine videos "
                   "made at once, at least 1 (default: the number of CPUs, of the cluster with --ray); "
                   "diffusion videos run one at a time per GPU")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", help="run on a Ray "
                   "cluster: ADDRESS of `ray start --head` (host:6379), ray://host:10001, or "
                   "nothing for $RAY_ADDRESS / the cluster on this machine. The output folder "
                   "must be on storage every node shares")
    p.add_argument("--ray-timeout", type=_positive_float, default=30.0, metavar="SECONDS",
                   help="how long to wait for the Ray head at ADDRESS to answer before "
                   "failing (more than 0; default 30)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_request_arguments(p)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _batch(args: argparse.Namespace, settings: Settings) -> int:
    """Make a video for each photo of a folder, glob or manifest.

    Make a video for each photo of a folder, a glob or a manifest (CSV with a header row, or
    JSONL), into one folder as <photo name>.mp4 with its sidecar, plus batch_report.json and
    .csv. Manifest rows give image (or images, ';'-separated) and any generation option as a
    column (prompt, seed, motion, duration...); a row's values override the command line's
    for that row. Running the same command again skips the videos already made for the same
    request (resume after Ctrl-C or a crash).
    """
    from img2vid.execution.batch import FAILED, PENDING, REPORT_STEM, run_batch

    source, ray_address = args.input, args.ray
    if source is None and ray_address and Path(ray_address).exists():
        source, ray_address = ray_address, ""  # `--ray photos/` took INPUT as its ADDRESS
    if source is None:
        raise InputError("batch needs INPUT: a folder of photos, a glob or a manifest")
    if ray_address is not None:
        from img2vid.execution.cluster import check_reachable, import_ray

        import_ray()  # the install hint before any work
        check_reachable(ray_address, args.ray_timeout)
    bar = BatchBar(enabled=not args.quiet)
    try:
        result = run_batch(source, request_fields(args), settings, output_dir=args.output_dir,
                           workers=args.workers, ray_address=ray_address, progress=bar,
                           ray_timeout=args.ray_timeout)
    except KeyboardInterrupt:
        bar.close()
        report = (args.output_dir or settings.output.directory) / f"{REPORT_STEM}.csv"
        print(f"img2vid: interrupted; finished videos are kept (report: {report}), run the "
              "same command again to make the rest", file=sys.stderr)
        return 130
    finally:
        bar.close()
    for name in result.ignored:
        print(f"img2vid: ignored {name} (not a photo)", file=sys.stderr)
    for row in result.rows:
        if row["status"] == FAILED:
            print(f"img2vid: failed: {row['item']}: {row['error']}", file=sys.stderr)
    counts = result.counts
    rate = (f", {counts['done'] / result.elapsed_s * 60:.1f} videos/min"
            if counts["done"] and result.elapsed_s > 0 else "")
    print(f"{counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed "
          f"in {result.elapsed_s:.1f} s{rate}; report: {result.report_csv}")
    if counts[PENDING]:
        return 130
    return 1 if counts[FAILED] else 0


# --- doctor ---------------------------------------------------------------------------------

def _add_doctor(sub: argparse._SubParsersAction) -> None:
    add_command(sub, "doctor", _doctor)


def _doctor(args: argparse.Namespace, settings: Settings) -> int:
    """Check this machine: encoders, libraries, GPU, disk, config."""
    from img2vid.interfaces.cli.doctor import report

    lines, ok = report(settings, config_path=args.config)
    print("\n".join(lines))
    return 0 if ok else 1


# --- entry point ----------------------------------------------------------------------------

# Each subcommand registers itself; later features add their builders here.
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_generate, _add_extend, add_serve_parser, _add_batch, add_interpolate_parser,
    add_upscale_parser, add_models_command, _add_doctor]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", help="config file (default: "
                        "$IMG2VID_CONFIG or ./config.yaml)")
    parser = _Parser(prog="img2vid", parents=[common],
                     description="Turn a still photo into a short video, locally.")
    parser.add_argument("--version", action="version", version=f"img2vid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for register in COMMANDS:
        before = set(sub.choices)
        register(sub)
        for name in set(sub.choices) - before:
            _accept_config(sub.choices[name])
    return parser


def _accept_config(parser: argparse.ArgumentParser) -> None:
    """--config is accepted after the subcommand too, also a nested one (`models list`)."""
    parser.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                _accept_config(child)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.log_path = None
    try:
        settings = load_settings(args.config)
        from img2vid.interfaces.cli.logs import setup_logging

        args.log_path = setup_logging(settings.logs)
        log.info("img2vid %s: %s", __version__, " ".join(_without_secrets(sys.argv)))
        return args.handler(args, settings)
    except KeyboardInterrupt:
        log.warning("interrupted by the user")
        print("img2vid: interrupted; no output was written", file=sys.stderr)
        return 130
    except Exception as exc:
        from img2vid.execution.failures import describe_failure

        failure = describe_failure(exc)
        if not failure.user_fault:
            log.exception("failed")
        return report_failure(failure, args.log_path)


def report_failure(failure: Failure, log_path: Path | None) -> int:
    """Print the failure's one line (with where the log is, unless it is the user's to fix)
    and return the exit code."""
    if failure.cancelled:
        print("img2vid: cancelled; no output was written", file=sys.stderr)
    elif failure.user_fault:
        log.info("input error: %s", failure.message)
        print(f"img2vid: error: {failure.message}", file=sys.stderr)
    else:
        prefix = "" if not failure.expected else "error: "  # "internal error: ..." as it is
        print(f"img2vid: {prefix}{failure.message}{_log_hint(log_path)}", file=sys.stderr)
    return failure.exit_code


def _without_secrets(argv: Sequence[str]) -> list[str]:
    """The command line as the log records it: a --token value is not written to disk."""
    shown = list(argv)
    for i, arg in enumerate(shown):
        if arg.startswith("--token="):
            shown[i] = "--token=***"
        elif arg == "--token" and i + 1 < len(shown):
            shown[i + 1] = "***"
    return shown


def _log_hint(path: Path | None) -> str:
    return f" (details in {path})" if path else ""
