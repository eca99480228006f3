"""Batch runs on one machine: folders with bad files, manifests, resume, engines, CLI exit codes."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import threading
from pathlib import Path

import pytest

from img2vid.core.config import ModelSettings, Settings
from img2vid.core.errors import ModelNotAvailableError, OutOfMemoryError
from img2vid.core.progress import CancelToken, Progress
from img2vid.core.request import OutputFormat, build_request, output_size
from img2vid.execution.batch import (
    DONE,
    FAILED,
    PENDING,
    SKIPPED,
    BatchItem,
    assign_outputs,
    run_batch,
)
from img2vid.interfaces.cli import app as cli
from img2vid.media.outputs import STAGING_PREFIX
from tests.batchkit import FAST, bad_files, decode, make_photo
from tests.fakes import FakeEngine, FakeGpus, Overlap

FAST_FLAGS = ["--resolution", "256", "--fps", "8", "--duration", "1", "--encode-speed",
              "ultrafast"]


def batch_main(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["batch", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def report(out: Path) -> dict:
    return json.loads((out / "batch_report.json").read_text())


def partials(out: Path) -> list[Path]:
    return list(out.glob(f"{STAGING_PREFIX}*"))


class CountingFactory:
    """Makes FakeEngines, counting creations and generations and the most run at once."""

    def __init__(self, delay: float = 0.0, fail: dict[str, Exception] | None = None) -> None:
        self.delay, self.fail = delay, fail or {}
        self.lock = threading.Lock()
        self.created: dict[str, int] = {}
        self.calls: list[tuple[str, str]] = []
        self.devices: list[tuple[str, str | None]] = []  # (engine, device) per creation
        self.overlap = Overlap()
        self.peak = self.overlap.peak

    def __call__(self, name: str, settings: Settings, device: str | None = None) -> FakeEngine:
        with self.lock:
            self.created[name] = self.created.get(name, 0) + 1
            self.devices.append((name, device))
        if name in self.fail:
            raise self.fail[name]
        factory = self

        class Tracked(FakeEngine):
            def generate(self, request, images, progress, cancel):
                with factory.lock:
                    factory.calls.append((name, request.images[0]))
                clip = super().generate(request, images, progress, cancel)
                return factory.overlap.track(name, clip)

        return Tracked(settings, delay=self.delay)


# --- folders with good and bad files -----------------------------------------------------------

def test_folder_with_bad_files_reports_them_and_makes_the_rest(workdir, capsys):
    photos = workdir / "shoot"
    good = [make_photo(photos / "alps.jpg", 1), make_photo(photos / "beach.png", 2, (120, 160)),
            make_photo(photos / "city.webp", 3)]
    bad = bad_files(photos)
    (photos / "notes.txt").write_text("not a photo, not an item")
    make_photo(photos / ".hidden.png", 4)
    out = workdir / "videos"

    code, stdout, stderr = batch_main(capsys, str(photos), "-o", str(out), "--quiet", *FAST_FLAGS)

    assert code == 1  # some item failed
    assert "3 done, 0 skipped, 4 failed" in stdout
    data = report(out)
    assert data["counts"] == {DONE: 3, SKIPPED: 0, FAILED: 4, PENDING: 0}
    rows = {Path(row["item"]).name: row for row in data["items"]}
    assert set(rows) == {p.name for p in good} | {p.name for p in bad.values()}
    assert "is not an image file" in rows["broken.jpg"]["error"]
    assert "truncated or corrupt" in rows["truncated.png"]["error"]
    assert "empty (0 bytes)" in rows["empty.webp"]["error"]
    assert "too small" in rows["tiny.png"]["error"]
    for bad_path in bad.values():
        assert rows[bad_path.name]["status"] == FAILED and rows[bad_path.name]["output"] == ""
        assert f"failed: {bad_path}: {rows[bad_path.name]['error']}" in stderr
    assert "ignored " + str(photos / "notes.txt") in stderr

    for src in good:
        video = out / f"{src.stem}.mp4"
        row = rows[src.name]
        assert row["status"] == DONE and row["output"] == str(video) and row["seconds"] > 0
        frames, width, height, _ = decode(video)
        request = build_request(images=(str(src),), **FAST)
        assert (width, height) == output_size(request, *_size(src))
        assert frames == 8
        sidecar = json.loads(video.with_suffix(".json").read_text())
        assert sidecar["request"]["images"] == [str(src)]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["batch_report.csv", "batch_report.json"]
        + [f"{p.stem}{ext}" for p in good for ext in (".mp4", ".json")])
    assert not partials(out)

    with (out / "batch_report.csv").open(newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["item"] for r in table] == [r["item"] for r in data["items"]]
    assert [r["status"] for r in table] == [r["status"] for r in data["items"]]
    assert list(table[0]) == ["item", "input", "status", "output", "seconds", "error"]

    # Without the bad files the same command skips everything and succeeds.
    for path in bad.values():
        path.unlink()
    code, stdout, _ = batch_main(capsys, str(photos), "-o", str(out), "--quiet", *FAST_FLAGS)
    assert code == 0
    assert "0 done, 3 skipped, 0 failed" in stdout


def _size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def test_glob_input_takes_matching_files(workdir, capsys):
    for i, name in enumerate(["a.png", "b.png", "c.jpg", "sub/d.png"]):
        make_photo(workdir / "in" / name, i)
    (workdir / "in" / "p.json").write_text("{}")
    code, _, stderr = batch_main(capsys, "in/**/[abdp].*", "-o", "out", "--quiet",
                                 *FAST_FLAGS)
    assert code == 0
    assert [r["item"] for r in report(workdir / "out")["items"]] == [
        "in/a.png", "in/b.png", "in/sub/d.png"]
    assert "ignored in/p.json (not a photo)" in stderr


# --- manifests ----------------------------------------------------------------------------------

def test_csv_manifest_per_row_overrides_and_invalid_rows(workdir, capsys):
    for i, name in enumerate(["sea.png", "hill.png", "road.png"]):
        make_photo(workdir / "jobs" / "photos" / name, i)
    manifest = workdir / "jobs" / "rows.csv"
    manifest.write_text(
        "image,prompt,motion,duration,fps\n"
        "photos/sea.png,a calm sea,zoom-in,,\n"  # line 2
        "photos/hill.png,,,2,\n"  # line 3: 2 s instead of the command line's 1 s
        "photos/road.png,,,,500\n"  # line 4: invalid fps
        "photos/missing.png,,,,\n"  # line 5: no such file
        ",,,,\n"  # line 6: blank row, not an item
        ",only a prompt,,,\n"  # line 7: no image
        "photos/sea.png,second take,pan-left,,\n")  # line 8: same photo again
    out = workdir / "out"
    os.chdir(workdir / "jobs" / "photos")  # image paths are relative to the manifest

    code, _, stderr = batch_main(capsys, str(manifest), "-o", str(out), "--quiet",
                              "--zoom", "1.5", *FAST_FLAGS)

    assert code == 1
    rows = {row["item"]: row for row in report(out)["items"]}
    assert list(rows) == [f"rows.csv:{n}" for n in (2, 3, 4, 5, 7, 8)]
    assert [rows[k]["status"] for k in rows] == [DONE, DONE, FAILED, FAILED, FAILED, DONE]

    # The invalid row gets exactly the message `img2vid generate` prints for the same value.
    assert cli.main(["generate", "x.png", "--fps", "500"]) == 2
    cli_line = capsys.readouterr().err.strip()
    assert cli_line == "img2vid: error: " + rows["rows.csv:4"]["error"]
    assert rows["rows.csv:4"]["error"] == "invalid request: fps=500: allowed range is 1 to 120"
    assert "image not found" in rows["rows.csv:5"]["error"]
    assert "no image given" in rows["rows.csv:7"]["error"]
    assert f"failed: rows.csv:4: {rows['rows.csv:4']['error']}" in stderr

    sea = json.loads((out / "sea.json").read_text())["request"]
    assert (sea["prompt"], sea["motion"], sea["zoom"]) == ("a calm sea", "zoom-in", 1.5)
    again = json.loads((out / "sea_2.json").read_text())["request"]
    assert (again["prompt"], again["motion"], again["zoom"]) == ("second take", "pan-left", 1.5)
    assert decode(out / "hill.mp4")[0] == 16  # the row's 2 s at 8 fps
    assert decode(out / "sea.mp4")[0] == 8
    assert not (out / "road.mp4").exists() and not (out / "missing.mp4").exists()


def test_jsonl_manifest_rows(workdir, capsys):
    for i, name in enumerate(["a.png", "b.png"]):
        make_photo(workdir / name, i)
    manifest = workdir / "rows.jsonl"
    manifest.write_text("\n".join([
        json.dumps({"images": ["a.png", "b.png"], "transition": 0.25, "duration": 2}),
        json.dumps({"image": "b.png", "num_frames": 4}),
        "",
        "{not json",
        json.dumps(["a.png"]),
        json.dumps({"image": "a.png", "colour": "blue"}),
        json.dumps({"image": "a.png", "image_count": 2}),
    ]) + "\n")

    code, _, _ = batch_main(capsys, str(manifest), "-o", "out", "--quiet", *FAST_FLAGS)

    assert code == 1
    rows = report(workdir / "out")["items"]
    assert [r["item"] for r in rows] == [f"rows.jsonl:{n}" for n in (1, 2, 4, 5, 6, 7)]
    assert [r["status"] for r in rows] == [DONE, DONE, FAILED, FAILED, FAILED, FAILED]
    assert "not valid JSON" in rows[2]["error"]
    assert "must be a JSON object" in rows[3]["error"]
    assert rows[4]["error"] == "invalid request: colour=blue: unknown field"
    slideshow = json.loads((workdir / "out" / "a.json").read_text())["request"]
    assert slideshow["images"] == [str(workdir / "a.png"), str(workdir / "b.png")]
    assert decode(workdir / "out" / "a.mp4")[0] == 16
    assert decode(workdir / "out" / "b.mp4")[0] == 4  # num_frames replaced the CLI duration


@pytest.mark.parametrize("case", ["missing", "empty-folder", "no-match", "unknown-column",
                                  "no-image-column", "not-utf8", "bad-option", "not-manifest",
                                  "no-input"])
def test_bad_usage_is_one_line_and_exit_2(workdir, capsys, case):
    (workdir / "empty").mkdir()
    (workdir / "cols.csv").write_text("image,colour\na.png,blue\n")
    (workdir / "noimg.csv").write_text("prompt\nhello\n")
    (workdir / "latin1.csv").write_bytes("image,prompt\na.png,caf\xe9\n".encode("latin-1"))
    (workdir / "list.txt").write_text("a.png\n")
    make_photo(workdir / "a.png", 0)
    args = {
        "missing": ["nowhere/"],
        "empty-folder": ["empty"],
        "no-match": ["empty/*.jpg"],
        "unknown-column": ["cols.csv"],
        "no-image-column": ["noimg.csv"],
        "not-utf8": ["latin1.csv"],
        "bad-option": ["a.png", "--fps", "0"],
        "not-manifest": ["list.txt"],
        "no-input": [],
    }[case]
    expected = {
        "missing": "nowhere/ not found",
        "empty-folder": "no photos in empty (looked for",
        "no-match": "no photos matching empty/*.jpg",
        "unknown-column": "unknown column(s) 'colour'",
        "no-image-column": "needs an 'image' (or 'images') column",
        "not-utf8": "is not UTF-8 text",
        "bad-option": "invalid request: fps=0: allowed range is 1 to 120",
        "not-manifest": "is not a folder, an image or a manifest",
        "no-input": "batch needs INPUT",
    }[case]

    code, stdout, stderr = batch_main(capsys, *args, "-o", "out")

    assert code == 2
    assert stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("img2vid: error: ")
    assert expected in stderr
    assert not (workdir / "out").exists()


def test_ray_without_ray_installed_says_how_to_install(workdir, capsys,
                                                       monkeypatch):
    make_photo(workdir / "in" / "a.png", 0)
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees without the extra
    for argv in (["in", "--ray"], ["--ray", "in"], ["in", "--ray", "10.0.0.1:6379"]):
        code, _, stderr = batch_main(capsys, *argv, "-o", "out")
        assert code == 2
        assert stderr == "img2vid: error: --ray needs Ray: pip install 'img2vid[ray]'\n"
    assert not (workdir / "out").exists()


# --- resume ---------------------------------------------------------------------------------------

def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def test_resume_after_interruption_does_each_item_once(tmp_path):
    photos = [make_photo(tmp_path / "in" / f"p{i}.png", i) for i in range(8)]
    out = tmp_path / "out"
    first = CountingFactory(delay=0.02)
    cancel = CancelToken()

    def stop_after_three(event):
        if event.done >= 3:
            cancel.cancel()  # what Ctrl-C does in the CLI

    result = run_batch(str(tmp_path / "in"), FAST, Settings(), output_dir=out, workers=2,
                       progress=stop_after_three, cancel=cancel, factory=first)

    done1 = {r["item"] for r in result.rows if r["status"] == DONE}
    assert len(done1) >= 3
    assert result.counts[PENDING] == 8 - len(done1) > 0
    assert result.counts[FAILED] == 0
    assert not partials(out)  # interrupted items left nothing behind
    on_disk = {p.stem for p in out.glob("*.mp4")}
    assert on_disk == {Path(i).stem for i in done1}
    assert {r["status"] for r in report(out)["items"] if r["item"] not in done1} == {PENDING}
    before = {p.name: _stat(p) for p in out.glob("*.mp4")}

    second = CountingFactory()
    result = run_batch(str(tmp_path / "in"), FAST, Settings(), output_dir=out, workers=2,
                       factory=second)

    assert result.counts == {DONE: 8 - len(done1), SKIPPED: len(done1), FAILED: 0, PENDING: 0}
    done2 = {r["item"] for r in result.rows if r["status"] == DONE}
    assert done1.isdisjoint(done2) and done1 | done2 == {str(p) for p in photos}
    assert sorted(Path(image).stem for _, image in second.calls) == sorted(
        Path(i).stem for i in done2)  # nothing generated twice
    assert {name: _stat(out / name) for name in before} == before  # first-run files untouched
    for p in photos:
        assert decode(out / f"{p.stem}.mp4")[0] == 8


def test_keyboard_interrupt_keeps_the_report_and_no_partial_files(tmp_path):
    for i in range(6):
        make_photo(tmp_path / "in" / f"p{i}.png", i)
    out = tmp_path / "out"
    factory = CountingFactory(delay=0.03)

    def interrupt(event):
        if event.done >= 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(str(tmp_path / "in"), FAST, Settings(), output_dir=out, workers=2,
                  progress=interrupt, factory=factory)

    data = report(out)
    assert data["counts"][DONE] >= 1 and data["counts"][PENDING] >= 1
    assert data["counts"][DONE] + data["counts"][PENDING] == 6
    assert len(list(out.glob("*.mp4"))) == data["counts"][DONE]
    assert not partials(out)
    assert not [t for t in threading.enumerate() if t.name.startswith("batch-")]


def test_resume_redoes_items_whose_request_or_photo_changed(tmp_path):
    for i in range(3):
        make_photo(tmp_path / "in" / f"p{i}.png", i)
    out = tmp_path / "out"

    def run(**changes):
        factory = CountingFactory()
        result = run_batch(str(tmp_path / "in"), {**FAST, **changes}, Settings(),
                           output_dir=out, factory=factory)
        return result.counts, sorted(Path(image).stem for _, image in factory.calls)

    assert run()[0][DONE] == 3
    assert run() == ({DONE: 0, SKIPPED: 3, FAILED: 0, PENDING: 0}, [])
    assert run(motion="pan-left")[0][DONE] == 3  # another request: made again, same names
    assert run(motion="pan-left")[0][SKIPPED] == 3
    make_photo(tmp_path / "in" / "p1.png", 42)  # the photo itself changed
    (out / "p2.json").unlink()  # a crash between the video and its sidecar
    assert run(motion="pan-left") == ({DONE: 2, SKIPPED: 1, FAILED: 0, PENDING: 0},
                                      ["p1", "p2"])
    assert sorted(p.name for p in out.glob("*.mp4")) == ["p0.mp4", "p1.mp4", "p2.mp4"]


def test_unseeded_diffusion_items_resume_whatever_seed_was_chosen(tmp_path):
    make_photo(tmp_path / "a.png", 0)
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text(json.dumps({"image": "a.png", "engine": "diffusion",
                                    "num_frames": 4}) + "\n")
    out = tmp_path / "out"
    assert run_batch(str(manifest), {}, Settings(), output_dir=out,
                     factory=CountingFactory()).counts[DONE] == 1
    sidecar = out / "a.json"
    data = json.loads(sidecar.read_text())
    data["request"]["seed"] = 1234  # as if the engine recorded the seed it drew
    sidecar.write_text(json.dumps(data))
    assert run_batch(str(manifest), {}, Settings(), output_dir=out,
                     factory=CountingFactory()).counts[SKIPPED] == 1
    # An explicit seed must match.
    assert run_batch(str(manifest), {"seed": 7}, Settings(), output_dir=out,
                     factory=CountingFactory()).counts[DONE] == 1


def test_stale_partial_files_from_a_crash_are_removed(tmp_path):
    make_photo(tmp_path / "in" / "a.png", 0)
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f"{STAGING_PREFIX}dead.mp4"
    fresh = out / f"{STAGING_PREFIX}busy.mp4"
    stale.write_bytes(b"half a video")
    fresh.write_bytes(b"being written by another process")
    os.utime(stale, (1, 1))
    run_batch(str(tmp_path / "in"), FAST, Settings(), output_dir=out,
              factory=CountingFactory())
    assert not stale.exists() and fresh.exists()


# --- engines -----------------------------------------------------------------------------------

def _mixed_manifest(tmp_path: Path, camera: int, diffusion: int) -> Path:
    lines = []
    for i in range(camera):
        lines.append({"image": str(make_photo(tmp_path / f"cam{i}.png", i))})
    for i in range(diffusion):
        lines.append({"image": str(make_photo(tmp_path / f"dif{i}.png", 10 + i)),
                      "engine": "diffusion", "model": "tiny", "num_frames": 4})
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return manifest


def test_diffusion_items_share_one_engine_one_at_a_time(tmp_path):
    manifest = _mixed_manifest(tmp_path, camera=4, diffusion=4)
    factory = CountingFactory(delay=0.02)
    result = run_batch(str(manifest), {"resolution": 256, "fps": 8, "encode_speed": "ultrafast"},
                       Settings(), output_dir=tmp_path / "out", workers=3, factory=factory)
    assert result.counts[DONE] == 8
    assert factory.created["diffusion"] == 1  # the model is loaded once for the batch
    assert factory.peak["diffusion"] == 1
    assert 2 <= factory.created["camera"] <= 3  # one engine per worker thread
    assert factory.peak["camera"] >= 2  # camera items do run in parallel


def test_diffusion_items_run_one_at_a_time_on_each_configured_gpu(tmp_path):
    manifest = _mixed_manifest(tmp_path, camera=1, diffusion=6)
    factory = CountingFactory(delay=0.05)
    settings = Settings(models=ModelSettings(devices=["cuda:0", "cuda:1"]))
    result = run_batch(str(manifest), {"resolution": 256, "fps": 8, "encode_speed": "ultrafast"},
                       settings, output_dir=tmp_path / "out", workers=1, factory=factory)
    assert result.counts[DONE] == 7
    assert sorted(factory.devices) == [("camera", None), ("diffusion", "cuda:0"),
                                       ("diffusion", "cuda:1")]
    assert factory.peak["diffusion"] == 2


def test_a_camera_only_batch_does_not_count_gpus(tmp_path):
    gpus = FakeGpus(2)  # counting real GPUs imports torch; a camera batch needs none
    manifest = _mixed_manifest(tmp_path, camera=2, diffusion=0)
    result = run_batch(str(manifest), FAST, Settings(), output_dir=tmp_path / "out",
                       factory=CountingFactory(), count_gpus=gpus)
    assert result.counts[DONE] == 2
    assert gpus.calls == 0


def test_engine_that_cannot_load_fails_its_items_once_and_the_batch_goes_on(tmp_path):
    manifest = _mixed_manifest(tmp_path, camera=2, diffusion=3)
    missing = ModelNotAvailableError("model 'tiny' is not downloaded; run img2vid models "
                                     "download tiny")
    factory = CountingFactory(fail={"diffusion": missing})
    result = run_batch(str(manifest), {"resolution": 256, "fps": 8, "duration": 1},
                       Settings(), output_dir=tmp_path / "out", factory=factory)
    assert result.counts == {DONE: 2, SKIPPED: 0, FAILED: 3, PENDING: 0}
    assert factory.created["diffusion"] == 1  # not retried for every item
    assert {r["error"] for r in result.rows if r["status"] == FAILED} == {str(missing)}


# --- names ------------------------------------------------------------------------------------

def test_output_names_are_unique_and_the_same_every_run(tmp_path):
    names = ["A.bmp", "a.jpg", "a.png", "a_2.jpg", "batch_report.png", "b.gif"]
    items = [BatchItem(n, (str(tmp_path / n),), build_request(images=(n,), **FAST))
             for n in names]
    items.append(BatchItem("bad row", (str(tmp_path / "c.png"),), error="invalid"))
    items.append(BatchItem("c again", (str(tmp_path / "c.png"),),
                           build_request(images=("c.png",), format="gif", **FAST)))
    first = assign_outputs(items, tmp_path, OutputFormat.GIF)
    assert [i.output.name if i.output else None for i in first] == [
        "A.gif", "a_3.gif", "a_4.gif", "a_2.gif", "batch_report_2.gif",
        "b_2.gif",  # b.gif is an input in the output folder: never overwritten
        None, "c_2.gif"]  # an invalid row keeps its name, so fixing it moves nothing
    assert assign_outputs(items, tmp_path, OutputFormat.GIF) == first


def test_out_of_memory_after_fallback_fails_only_that_item(tmp_path):
    for name in ("small", "huge", "tiny"):
        make_photo(tmp_path / "in" / f"{name}.png", len(name), (160, 120))
    oom = OutOfMemoryError("out of memory even with the lightest memory plan; try a smaller "
                           "resolution")

    def factory(name, settings, device=None):
        class OOMOnHuge(FakeEngine):
            def generate(self, request, images, progress, cancel):
                if Path(request.images[0]).stem == "huge":
                    raise oom
                return super().generate(request, images, progress, cancel)

        return OOMOnHuge(settings)

    result = run_batch(str(tmp_path / "in"), FAST, Settings(), output_dir=tmp_path / "out",
                       factory=factory)
    assert result.counts == {DONE: 2, SKIPPED: 0, FAILED: 1, PENDING: 0}
    assert [(Path(r["item"]).name, r["error"]) for r in result.rows if r["status"] == FAILED
            ] == [("huge.png", str(oom))]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_shows_counts_and_time_left(monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    bar = cli.BatchBar()
    for done, message in [(0, "0 done, 0 failed, 2 skipped"), (1, "1 done, 0 failed, 2 skipped"),
                          (2, "1 done, 1 failed, 2 skipped")]:
        bar(Progress("batch", done, 4, message=message))
    bar.close()
    shown = terminal.getvalue().replace("\r", "\n").splitlines()
    assert any("2/4" in line and "1 done, 1 failed, 2 skipped" in line and "<" in line
               for line in shown)  # tqdm's "elapsed<remaining"
    assert not cli.BatchBar(enabled=False).enabled
