"""`img2vid batch` as a user runs it: a real process, the camera engine, Ctrl-C and kill -9."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from img2vid.media.outputs import STAGING_PREFIX
from tests.batchkit import decode, make_photo
from tests.conftest import run_cli, start_cli

# About a second per video on two cores, so a run can be stopped half way.
SLOW = ["--resolution", "360", "--fps", "24", "--duration", "2", "--encode-speed", "fast",
        "--workers", "1", "--quiet"]
COUNT = 6


def _photos(tmp_path: Path) -> list[Path]:
    return [make_photo(tmp_path / "in" / f"p{i}.png", i, (480, 360)) for i in range(COUNT)]


def _start(tmp_path: Path) -> subprocess.Popen[str]:
    return start_cli("batch", "in", "-o", "out", *SLOW, cwd=tmp_path)


def _wait_for_sidecars(proc: subprocess.Popen[str], out: Path, count: int) -> None:
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(list(out.glob("p*.json"))) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"the batch never got to {count} videos: {proc.communicate()}")


def _finished(out: Path) -> dict[str, tuple[int, int]]:
    """Videos with their sidecar (what a rerun skips), with inode and mtime."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("p*.mp4")
            if p.with_suffix(".json").exists()}


def _rerun_and_check(tmp_path: Path, before: dict[str, tuple[int, int]]) -> None:
    """A second run makes exactly the missing videos and leaves the first run's alone."""
    out = tmp_path / "out"
    proc = run_cli("batch", "in", "-o", "out", *SLOW, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((out / "batch_report.json").read_text())["items"]
    skipped = {Path(r["output"]).name for r in rows if r["status"] == "skipped"}
    done = {Path(r["output"]).name for r in rows if r["status"] == "done"}
    assert skipped == set(before)  # nothing done twice
    assert skipped | done == {f"p{i}.mp4" for i in range(COUNT)}  # nothing lost
    assert skipped.isdisjoint(done)
    assert {name: value for name, value in _finished(out).items() if name in before} == before
    for i in range(COUNT):
        frames, width, height, _ = decode(out / f"p{i}.mp4")
        assert (frames, width, height) == (48, 480, 360)


def test_ctrl_c_keeps_finished_videos_and_the_rerun_does_the_rest(tmp_path):
    _photos(tmp_path)
    out = tmp_path / "out"
    proc = _start(tmp_path)
    _wait_for_sidecars(proc, out, 2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 130, stderr
    assert stdout == ""
    assert stderr == ("img2vid: interrupted; finished videos are kept (report: "
                      "out/batch_report.csv), run the same command again to make the rest\n")
    assert not list(out.glob(f"{STAGING_PREFIX}*"))  # the video in flight left nothing
    data = json.loads((out / "batch_report.json").read_text())
    assert data["counts"]["done"] >= 2 and data["counts"]["pending"] >= 1
    assert data["counts"]["done"] + data["counts"]["pending"] == COUNT
    before = _finished(out)
    assert set(before) == {Path(r["output"]).name for r in data["items"]
                           if r["status"] == "done"}

    _rerun_and_check(tmp_path, before)


@pytest.mark.slow
def test_kill_9_loses_at_most_the_video_in_flight(tmp_path):
    _photos(tmp_path)
    out = tmp_path / "out"
    proc = _start(tmp_path)
    _wait_for_sidecars(proc, out, 2)
    proc.kill()
    proc.communicate(timeout=60)
    before = _finished(out)
    assert len(before) >= 2

    _rerun_and_check(tmp_path, before)
