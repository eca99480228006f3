"""Optional extras as a user meets them: every path that needs a missing one is one line
naming the extra and the command that installs it (exit 2); doctor lists them. Packages are
made missing in the real subprocess by tests/without/sitecustomize.py, not by patching."""

from __future__ import annotations

import pytest

from img2vid.core.extras import install_command
from tests.batchkit import make_photo
from tests.conftest import ROOT, run_cli


def run_without(modules: str, *args, cwd):
    env = {"PYTHONPATH": f"{ROOT / 'tests' / 'without'}:{ROOT / 'src'}",
           "IMG2VID_TEST_WITHOUT": modules, "HF_HUB_OFFLINE": "1",
           "IMG2VID_MODEL_CACHE": str(cwd / "empty-cache")}
    return run_cli(*args, cwd=cwd, env=env, timeout=60)


CASES = [
    ("models", "huggingface_hub", ["models"], "diffusion", "img2vid models"),
    ("models-download", "huggingface_hub", ["models", "download", "i2vgen-xl"], "diffusion",
     "img2vid models download i2vgen-xl"),
    ("model-folder", "transformers", ["generate", "{photo}", "--model", "{folder}"],
     "diffusion", "--model {folder}"),
    ("model-name", "diffusers", ["generate", "{photo}", "--model", "i2vgen-xl"], "diffusion",
     "--model i2vgen-xl"),
    ("rife-generate", "torch", ["generate", "{photo}", "--interpolate", "2", "--interpolator",
                                "rife"], "diffusion", "--interpolator rife"),
    ("rife-interpolate", "torch", ["interpolate", "{photo}", "-o", "x.mp4", "--interpolate", "2",
                                   "--interpolator", "rife"], "diffusion", "--interpolator rife"),
    ("dry-run", "torch", ["generate", "{photo}", "--model", "ltx-video", "--dry-run"],
     "diffusion", "--model ltx-video"),
    ("serve", "gradio", ["serve", "--port", "1"], "server", "img2vid serve"),
    ("ray", "ray", ["batch", "{photo}", "--ray", "127.0.0.1:1"], "ray", "batch --ray"),
    ("quantize", "torchao", ["generate", "{photo}", "--model", "i2vgen-xl", "--quantize",
                             "int8"], "quantize", "--quantize int8"),
]


@pytest.mark.parametrize("case", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_missing_extra_is_one_line_with_its_install_command(tmp_path, case):
    modules, args, extra, feature = case
    photo = make_photo(tmp_path / "p.png", 0)
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")
    args = [a.format(photo=photo, folder=folder) for a in args]
    proc = run_without(modules, *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    missing = modules.split(",")[0]
    assert proc.stderr == (f"img2vid: error: {feature.format(folder=folder)} needs the {extra} "
                           f"extra ({missing} is not installed); install it with: "
                           f"{install_command(extra)}\n")
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "x.mp4").exists()


def test_the_install_command_is_for_this_checkout():
    command = install_command("diffusion")
    assert command == f"make -C {ROOT} extras EXTRAS=diffusion" or (
        f"-e '{ROOT}[diffusion]'" in command)


def test_doctor_shows_which_extras_are_installed(tmp_path):
    proc = run_without("ray,torchao", "doctor", cwd=tmp_path)
    lines = {line.split("]", 1)[1].strip()[:22].strip(): line for line in proc.stdout.splitlines()
             if line.startswith("[")}
    assert lines["extra ray"].startswith("[info]")
    assert f"not installed (ray missing): {install_command('ray')}" in lines["extra ray"]
    assert "not installed (torchao missing)" in lines["extra quantize"]
    for extra in ("diffusion", "server"):
        assert lines[f"extra {extra}"].startswith("[ ok ]") and "installed (" in lines[
            f"extra {extra}"]
    assert "HEIC/HEIF" in lines["photo formats"]


def test_an_unreachable_ray_head_fails_in_one_line_naming_it(tmp_path):
    import socket
    import time

    pytest.importorskip("ray")  # without it: the missing-extra line above
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    make_photo(tmp_path / "in" / "a.png", 0)
    t0 = time.monotonic()
    proc = run_cli("batch", "in", "-o", "out", "--ray", f"127.0.0.1:{port}", "--ray-timeout",
                   "2", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == (f"img2vid: error: cannot reach the Ray cluster at 127.0.0.1:{port} "
                           "within 2 s (Connection refused); check the address and that "
                           "`ray start --head` runs there (--ray-timeout sets the wait)\n")
    assert time.monotonic() - t0 < 30 and not (tmp_path / "out").exists()
    help_text = run_cli("batch", "--help", cwd=tmp_path).stdout
    assert "--ray-timeout SECONDS" in help_text and "default 30" in help_text
