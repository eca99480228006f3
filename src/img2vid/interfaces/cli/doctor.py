"""`img2vid doctor`: what this machine can do, and what is missing."""

from __future__ import annotations

import importlib
import platform
import shutil
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from img2vid.core import extras
from img2vid.core.config import Settings, dump_settings, find_config
from img2vid.core.errors import InputError
from img2vid.execution.lanes import worker_devices

REQUIRED_ENCODERS = ("libx264",)
OPTIONAL_ENCODERS = ("libx265", "libsvtav1", "libvpx-vp9", "ffv1", "gif", "png", "aac",
                     "libopus", "flac")
# the packages whose versions doctor shows for each installed extra
EXTRA_PACKAGES = {"diffusion": ("diffusers", "transformers"), "server": ("fastapi", "gradio"),
                  "ray": ("ray",), "quantize": ("torchao",), "upscale": ("spandrel", "torchvision")}


def report(settings: Settings, config_path: str | None = None) -> tuple[list[str], bool]:
    """Lines to print and whether everything required is present."""
    lines: list[str] = []
    ok = True

    def line(status: str, what: str, detail: str) -> None:
        lines.append(f"[{status:^4}] {what:<22} {detail}")

    line("ok", "python", platform.python_version())
    for module in ("numpy", "PIL", "cv2", "av"):
        try:
            mod = importlib.import_module(module)
            line("ok", module, getattr(mod, "__version__", "?"))
        except ImportError as exc:
            ok = False
            line("FAIL", module, f"not importable ({exc}); reinstall img2vid")

    try:
        import av

        line("ok", "ffmpeg (libavcodec)", ".".join(map(str, av.library_versions["libavcodec"])))
        for codec in REQUIRED_ENCODERS + OPTIONAL_ENCODERS:
            present = codec in av.codecs_available
            required = codec in REQUIRED_ENCODERS
            ok &= present or not required
            line("ok" if present else ("FAIL" if required else "warn"), f"encoder {codec}",
                 "available" if present else "missing from this PyAV build")
        from img2vid.media.encoders import GPU_ENCODERS, nvenc_works

        for codec in GPU_ENCODERS.values():
            works = nvenc_works(codec)
            line("ok" if works else "info", f"encoder {codec}",
                 "available (--encoder gpu)" if works else "not usable here (needs an NVIDIA "
                 "GPU and driver); --encoder gpu falls back to the CPU")
    except ImportError:
        pass

    try:
        import cv2

        cascade = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        line("ok" if cascade.is_file() else "warn", "face detector",
             "Haar cascade bundled" if cascade.is_file() else "missing: focus auto uses centre")
    except (ImportError, AttributeError):
        pass

    from img2vid.media.images import readable_formats

    line("ok", "photo formats", readable_formats())
    try:
        torch = importlib.import_module("torch")
        detail = f"{torch.__version__}"
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                free, total = torch.cuda.mem_get_info(i)
                detail += (f"; cuda:{i} {torch.cuda.get_device_name(i)} "
                           f"{free / 2**30:.1f}/{total / 2**30:.1f} GiB free")
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            detail += "; Apple MPS available"
        else:
            detail += "; no GPU: diffusion runs on the CPU (slow)"
        line("ok", "torch", detail)
        devices = worker_devices(settings.models.devices)
        line("ok", "diffusion workers", f"{len(devices)}: " + ", ".join(
            d or "on the best device found" for d in devices) + " (one job at a time each)")
    except ImportError:
        line("info", "torch", "not installed: camera engine only (see extra diffusion)")
    for extra, missing in extras.installed().items():
        if missing is None:
            versions = ", ".join(f"{p} {_version(p)}" for p in EXTRA_PACKAGES[extra])
            line("ok", f"extra {extra}", f"installed ({versions})")
        else:
            line("info", f"extra {extra}", f"not installed ({missing} missing): "
                 f"{extras.install_command(extra)}")

    _finishing_models(settings, line)

    out = settings.output.directory
    probe = out if out.exists() else next((p for p in out.resolve().parents if p.exists()), None)
    if probe is None:
        ok = False
        line("FAIL", "output folder", f"{out}: no existing parent folder")
    else:
        free = shutil.disk_usage(probe).free
        enough = free > 1 << 30
        line("ok" if enough else "warn", "output folder",
             f"{out} ({free / 2**30:.1f} GiB free)" + ("" if enough else ": low on space"))

    config = find_config(config_path)
    lines.append(f"\nconfig in effect ({config or 'defaults, no config file'}):")
    lines.extend("  " + row for row in dump_settings(settings).splitlines())
    return lines, ok


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def _finishing_models(settings: Settings, line: Callable[[str, str, str], None]) -> None:
    """Whether --upscale (model) and --style have their weights here, and which upscaler
    checkpoints load."""
    from img2vid.postprocess.sr_models import spandrel_problem
    from img2vid.postprocess.style import find_weights

    problem = spandrel_problem()
    line("ok" if problem is None else "info", "upscale checkpoints",
         "ESRGAN, Real-ESRGAN (built in); " + (f"SwinIR, HAT, DAT... (spandrel "
                                               f"{_version('spandrel')})" if problem is None
                                               else f"not SwinIR, HAT, DAT...: {problem}"))

    model = settings.models.upscale_model
    line("ok" if model else "info", "upscale model",
         model or "models.upscale_model not set: give --upscale-model, or --upscaler lanczos")
    try:
        line("ok", "style weights (AdaIN)", str(find_weights(None, settings)))
    except InputError as exc:
        line("info", "style weights (AdaIN)", str(exc).removeprefix("--style needs "))
