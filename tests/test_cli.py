"""The CLI as users run it: exit codes, one-line errors, no stray files, end-to-end renders."""

import json
import signal
import subprocess
import sys
import time

import av
import pytest

from tests.conftest import ROOT, run_cli, start_cli
from tests.test_images import bad_inputs


def _outputs(cwd):
    out = cwd / "outputs"
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


@pytest.mark.parametrize("case", ["zero-byte", "truncated", "corrupt", "not-an-image", "missing",
                                  "directory", "bomb", "too-small"])
def test_bad_inputs_exit_2_with_one_line_and_no_output(tmp_path, case):
    path, words = bad_inputs(tmp_path / "in")[case]
    proc = run_cli("generate", path, "--preset", "preview", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in proc.stderr
    assert _outputs(tmp_path) == []


@pytest.mark.parametrize("args, words", [
    (["--fps", "0"], "fps=0: allowed range is 1 to 120"),
    (["--guidance-scale", "50"], "guidance_scale=50"),
    (["--num-frames", "10000"], "num_frames=10000"),
    (["--motion", "spin"], "motion=spin"),
    (["--focus", "2,0.5"], "focus=2,0.5"),
    (["--resolution", "1000"], "resolution=1000"),
    (["--no-such-flag"], "unrecognized arguments"),
])
def test_bad_parameters_exit_2_with_one_line(tmp_path, photo, args, words):
    proc = run_cli("generate", photo, *args, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], proc.stderr
    assert _outputs(tmp_path) == []


def test_bad_config_exits_2(tmp_path, photo):
    (tmp_path / "config.yaml").write_text("output:\n  colour: red\n")
    proc = run_cli("generate", photo, cwd=tmp_path)
    assert proc.returncode == 2 and "unknown key 'output.colour'" in proc.stderr


def test_doctor_reports_encoders_and_config(tmp_path):
    proc = run_cli("doctor", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert "encoder libx264" in proc.stdout and "config in effect" in proc.stdout


def test_help_does_not_import_heavy_libraries(tmp_path):
    code = ("import sys; from img2vid.interfaces.cli.app import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch','diffusers','av','cv2','gradio') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT / "src")})
    assert proc.stdout.strip() == "[]", proc.stderr


def test_generate_camera_end_to_end_with_log_and_sidecar(tmp_path, photo):
    (tmp_path / "config.yaml").write_text("output:\n  prefix: clip_\n")
    proc = run_cli("generate", photo, "--preset", "preview", "--duration", "1", "--fps", "12",
                   "--motion", "zoom-in", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    side = json.loads(proc.stdout)
    path = tmp_path / side["output"]["path"]
    assert path.name.startswith("clip_") and path.suffix == ".mp4"
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert (s.codec_context.name, s.codec_context.width, s.codec_context.height) == \
            ("h264", 1080, 720)
        assert sum(1 for _ in c.decode(s)) == 12
    logs = list((tmp_path / "logs").glob("app_*.log"))
    assert len(logs) == 1 and "wrote" in logs[0].read_text()


def test_ctrl_c_stops_cleanly_without_partial_file(tmp_path, photo):
    proc = start_cli("generate", photo, "--resolution", "1080", "--duration", "60", "--fps",
                     "30", "--encode-speed", "slow", cwd=tmp_path)
    out_dir = tmp_path / "outputs"
    deadline = time.time() + 60
    while (time.time() < deadline and proc.poll() is None
           and not any(out_dir.glob(".img2vid-partial-*"))):
        time.sleep(0.1)
    assert any(out_dir.glob(".img2vid-partial-*")), "encoding never started"
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert list(out_dir.iterdir()) == []


def test_a_failure_is_one_line_on_the_terminal_and_a_traceback_in_the_log(
        workdir, photo, monkeypatch, capsys):
    import img2vid.execution.pipeline
    from img2vid.core.errors import OutOfMemoryError
    from img2vid.interfaces.cli import app as cli

    def out_of_memory(*args, **kwargs):
        raise OutOfMemoryError("ran out of memory at memory level minimum: try fewer frames")

    monkeypatch.setattr(img2vid.execution.pipeline, "generate", out_of_memory)
    code = cli.main(["generate", str(photo)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("img2vid: error: ran out of memory at memory level minimum")
    assert "Traceback" in next((workdir / "logs").glob("app_*.log")).read_text()


def test_the_log_does_not_keep_the_server_token():
    from img2vid.interfaces.cli.app import _without_secrets

    assert _without_secrets(["img2vid", "serve", "--token", "s3cret", "--port", "1"]) == [
        "img2vid", "serve", "--token", "***", "--port", "1"]
    assert _without_secrets(["serve", "--token=s3cret"]) == ["serve", "--token=***"]


def test_nested_subcommands_take_config_and_json_anywhere(tmp_path):
    (tmp_path / "c.yaml").write_text("output:\n  prefix: x_\n")
    listed = run_cli("models", "list", "--config", "c.yaml", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("MODEL")
    as_json = run_cli("models", "--json", "list", cwd=tmp_path)
    assert as_json.returncode == 0 and json.loads(as_json.stdout)[0]["name"] == "i2vgen-xl"
