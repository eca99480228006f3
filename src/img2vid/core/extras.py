"""The optional extras (diffusion, server, ray, quantize, upscale): which are installed, and the one
line that names a missing one with the command that installs it in this installation."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

from img2vid.core.errors import InputError

# What each extra must make importable (pyproject.toml's [project.optional-dependencies]).
EXTRAS: dict[str, tuple[str, ...]] = {
    "diffusion": ("torch", "diffusers", "transformers", "accelerate", "huggingface_hub",
                  "safetensors"),
    "server": ("fastapi", "uvicorn", "gradio", "multipart"),
    "ray": ("ray",),
    "quantize": ("torchao",),
    "upscale": ("spandrel", "torchvision"),  # spandrel imports torchvision
}


class MissingExtraError(InputError):
    """A feature needs an optional extra that is not installed (exit code 2)."""


def missing_module(extra: str) -> str | None:
    """The first module of `extra` that cannot be imported here, or None."""
    for module in EXTRAS[extra]:
        try:
            if importlib.util.find_spec(module) is None:
                return module
        except (ImportError, ValueError):
            return module
    return None


def installed() -> dict[str, str | None]:
    """Each extra -> None when installed, else the module that is missing."""
    return {extra: missing_module(extra) for extra in EXTRAS}


def require(extra: str, feature: str) -> None:
    """Raise MissingExtraError naming `extra` and its install command unless it is there."""
    module = missing_module(extra)
    if module is not None:
        raise MissingExtraError(missing_message(extra, feature, module))


def missing_message(extra: str, feature: str, module: str) -> str:
    return (f"{feature} needs the {extra} extra ({module} is not installed); install it "
            f"with: {install_command(extra)}")


def install_command(extra: str) -> str:
    """The exact command that adds `extra` to the Python running img2vid.

    From a checkout's .venv that is the Makefile target (CPU torch unless there is an
    NVIDIA GPU); from another environment on a checkout, pip on the checkout; otherwise pip.
    """
    root = checkout_root()
    if root is not None and _same(Path(sys.prefix), root / ".venv"):
        return f"make -C {_quote(root)} extras EXTRAS={extra}"
    pip = f"{_quote(Path(sys.executable))} -m pip install"
    if root is not None:
        cpu = "" if has_nvidia_gpu() else f" -c {_quote(root / 'constraints-cpu.txt')}"
        return f"{pip}{cpu} -e '{root}[{extra}]'"
    return f"{pip} 'img2vid[{extra}]'"


def checkout_root() -> Path | None:
    """The source checkout this img2vid runs from (an editable install), if any."""
    for root in Path(__file__).resolve().parents[2:5]:  # src/img2vid/core/extras.py
        if (root / "pyproject.toml").is_file() and (root / "Makefile").is_file():
            return root
    return None


def has_nvidia_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _quote(path: Path) -> str:
    text = str(path)
    return f"'{text}'" if any(c in text for c in " '\"$&;()") else text
