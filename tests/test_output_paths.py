"""What -o means, as users type it: the container from the extension, folders, --overwrite,
one sidecar per output, and output folders that cannot be written (exit 2 naming them)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from tests.batchkit import make_photo
from tests.conftest import run_cli

FAST = ("--width", "96", "--height", "64", "--fps", "8", "--duration", "0.5",
        "--motion", "zoom-in")


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _one_error_line(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.fixture
def small(tmp_path: Path) -> Path:
    return make_photo(tmp_path / "p.png", 1, (96, 64))


@pytest.mark.parametrize("name, container, codec", [
    ("clip.mp4", "mp4", "h264"), ("clip.webm", "webm", "vp9"),
    ("clip.mkv", "matroska", "ffv1"), ("clip.gif", "gif", "gif")])
def test_the_extension_picks_the_container(tmp_path, small, name, container, codec):
    proc = run_cli("generate", small, "-o", name, *FAST, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with av.open(str(tmp_path / name)) as c:
        assert container in c.format.name.split(",") and c.streams.video[0].codec_context.name == codec
    side = json.loads((tmp_path / f"{name}.json").read_text())
    assert side["output"]["path"] == name and side["output"]["format"] == name[5:]


def test_outputs_of_different_formats_each_keep_their_own_sidecar(tmp_path, small):
    for name in ("clip.mp4", "clip.webm", "clip"):
        assert run_cli("generate", small, "-o", name, *FAST, cwd=tmp_path).returncode == 0
    assert (tmp_path / "clip").is_dir() and len(list((tmp_path / "clip").iterdir())) == 4
    for name, fmt in (("clip.mp4", "mp4"), ("clip.webm", "webm"), ("clip", "png")):
        assert json.loads((tmp_path / f"{name}.json").read_text())["output"]["format"] == fmt


@pytest.mark.parametrize("args, words", [
    (["-o", "clip.avi"], "-o clip.avi: .avi is not an output format img2vid writes; allowed: "
     ".mp4, .webm, .mkv, .gif, no extension"),
    (["-o", "clip.mp4", "--format", "webm"], "-o clip.mp4 names a .mp4 file but --format is "
     "webm; drop --format or use clip.webm"),
    (["-o", "frames", "--format", "gif"], "names a folder of PNG frames but --format is gif"),
])
def test_unknown_or_contradicting_extension_is_exit_2(tmp_path, small, args, words):
    line = _one_error_line(run_cli("generate", small, *args, *FAST, cwd=tmp_path))
    assert words in line
    assert _files(tmp_path) == ["logs", "p.png"]  # nothing rendered


def test_an_existing_output_is_replaced_only_with_overwrite(tmp_path, small):
    (tmp_path / "clip.mp4").write_bytes(b"my holiday video")
    line = _one_error_line(run_cli("generate", small, "-o", "clip.mp4", *FAST, cwd=tmp_path))
    assert "clip.mp4 already exists; add --overwrite to replace it" in line
    assert (tmp_path / "clip.mp4").read_bytes() == b"my holiday video"
    assert not (tmp_path / "clip.mp4.json").exists()
    proc = run_cli("generate", small, "-o", "clip.mp4", "--overwrite", *FAST, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with av.open(str(tmp_path / "clip.mp4")) as c:
        assert c.streams.video[0].frames == 4
    # a frame folder made earlier is the output again, not a folder to write into
    assert run_cli("generate", small, "-o", "frames", *FAST, cwd=tmp_path).returncode == 0
    assert "frames already exists" in _one_error_line(
        run_cli("generate", small, "-o", "frames", *FAST, cwd=tmp_path))
    proc = run_cli("generate", small, "-o", "frames", "--overwrite", "--duration", "1",
                   *FAST[:6], cwd=tmp_path)
    assert proc.returncode == 0 and len(list((tmp_path / "frames").iterdir())) == 8


@pytest.mark.parametrize("arg, folder", [("newdir/", "newdir"), ("videos", "videos"),
                                         ("deep/er/", "deep/er")])
def test_a_folder_gets_a_timestamped_output_inside(tmp_path, small, arg, folder):
    (tmp_path / "videos").mkdir()
    proc = run_cli("generate", small, "-o", arg, "--format", "webm", *FAST, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    made = _files(tmp_path / folder)
    assert len(made) == 2 and made[0].startswith("video_") and made[0].endswith(".webm")
    assert made[1] == made[0] + ".json"
    assert proc.stdout.strip() == str(Path(folder) / made[0])


def test_interpolate_follows_the_same_rules(tmp_path, small):
    assert run_cli("generate", small, "-o", "in.mp4", *FAST, cwd=tmp_path).returncode == 0
    assert run_cli("interpolate", "in.mp4", "-o", "out/", "--interpolate", "2",
                   cwd=tmp_path).returncode == 0
    made = _files(tmp_path / "out")
    assert made[0].endswith(".mp4") and made[1] == made[0] + ".json"
    line = _one_error_line(run_cli("interpolate", "in.mp4", "-o", "in.webm", "--format", "mkv",
                                   "--interpolate", "2", cwd=tmp_path))
    assert "names a .webm file but --format is mkv" in line
    (tmp_path / "x.mkv").write_bytes(b"keep")
    line = _one_error_line(run_cli("interpolate", "in.mp4", "-o", "x.mkv", "--interpolate", "2",
                                   cwd=tmp_path))
    assert "x.mkv already exists; add --overwrite" in line
    assert run_cli("interpolate", "in.mp4", "-o", "x.mkv", "--interpolate", "2", "--overwrite",
                   cwd=tmp_path).returncode == 0


# --- output folders that cannot be written ------------------------------------------------------

@contextlib.contextmanager
def _read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder writes fail in even for root: a read-only tmpfs mount (root), else mode 555."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("root without permission to mount a read-only tmpfs: no read-only "
                    f"folder can be made here ({mounted.stderr.decode().strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


# /sys refuses new entries to root (no permission); /proc/<missing> is a path whose parent
# cannot be created, as on a drive that is not mounted.
UNWRITABLE = {"no-permission": "/sys/img2vid-out", "missing-drive": "/proc/no-drive/videos"}


def _commands(folder: str, small: Path, clip: Path) -> dict[str, tuple[list[str], dict]]:
    env = {"IMG2VID_OUTPUT__DIRECTORY": folder}
    return {
        "generate": (["generate", str(small), "-o", f"{folder}/", *FAST], {}),
        "generate-config": (["generate", str(small), *FAST], env),
        "interpolate": (["interpolate", str(clip), "-o", f"{folder}/x.mp4",
                         "--interpolate", "2"], {}),
        "batch": (["batch", str(small), "-o", folder, *FAST], {}),
        "serve": (["serve", "--port", str(_free_port())], env),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("kind", ["read-only", *UNWRITABLE])
def test_unwritable_output_folder_is_exit_2_naming_it(tmp_path, small, kind):
    clip = tmp_path / "in.mp4"
    assert run_cli("generate", small, "-o", clip, *FAST, cwd=tmp_path).returncode == 0
    with contextlib.ExitStack() as stack:
        folder = (str(stack.enter_context(_read_only_folder(tmp_path))) if kind == "read-only"
                  else UNWRITABLE[kind])
        for name, (args, env) in _commands(folder, small, clip).items():
            line = _one_error_line(run_cli(*args, cwd=tmp_path, env=env, timeout=60))
            assert line.startswith(f"img2vid: error: cannot write to the output folder {folder}"
                                   ), (name, line)
            assert "choose another -o or output.directory" in line, (name, line)
        if kind == "read-only":
            assert _files(Path(folder)) == []
