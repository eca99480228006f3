"""`img2vid generate --model <folder>` end to end on tiny models, and `img2vid models`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import run_cli

SMALL = ["--width", "96", "--height", "64", "--num-frames", "4", "--num-inference-steps", "2"]


def decoded_frames(path: Path) -> list:
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def offline_env(home: Path) -> dict[str, str]:
    return {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def check_clip(out: Path, frames: int) -> dict:
    decoded = decoded_frames(out)
    assert len(decoded) == frames and decoded[0].shape == (64, 96, 3)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    info = sidecar["engine_info"]
    assert sidecar["engine"] == "diffusion" and sidecar["seed"] == 3
    assert info["size"]["used"] == {"width": 96, "height": 64, "num_frames": frames}
    assert info["size"]["asked"]["num_frames"] == 4
    assert info["memory_plan"]["reason"]
    assert {"torch", "diffusers", "transformers"} <= set(sidecar["versions"])
    return info


def test_wan_folder_writes_mp4_with_4k_plus_1_frames(wan_dir, small_photo, tmp_path):
    out = tmp_path / "wan.mp4"
    result = run_cli("generate", small_photo, "--model", wan_dir, *SMALL, "--prompt", "the cat",
                     "--negative-prompt", "blurry", "--seed", "3", "-o", out, cwd=tmp_path,
                     env=offline_env(tmp_path / "hf"))
    assert result.returncode == 0, result.stderr
    info = check_clip(out, 5)
    assert info["model"]["family"] == "wan" and info["model"]["source"] == "folder"
    # the terminal gets img2vid's own notes (sizes snapped...), not the libraries' import chatter
    notes = result.stderr.splitlines()
    assert all(line.startswith("WARNING: ") for line in notes), result.stderr
    assert not any(word in result.stderr for word in ("torchao", "triton", "deprecated"))


def test_svd_folder_with_a_prompt_warns_and_records_it(svd_dir, small_photo, tmp_path):
    out = tmp_path / "svd.mp4"
    result = run_cli("generate", small_photo, "--model", svd_dir, *SMALL, "--prompt",
                     "waves crash", "--motion-bucket-id", "60", "--seed", "3", "-o", out,
                     cwd=tmp_path, env=offline_env(tmp_path / "hf"))
    assert result.returncode == 0, result.stderr
    assert "takes no text prompt" in result.stderr
    info = check_clip(out, 4)
    assert info["ignored_prompt"]["prompt"] == "waves crash"
    assert info["motion_bucket_id"] == 60


def test_offline_missing_model_is_one_clear_line(small_photo, tmp_path):
    out = tmp_path / "none.mp4"
    result = run_cli("generate", small_photo, "--model", "i2vgen-xl", "-o", out, cwd=tmp_path,
                     env=offline_env(tmp_path / "empty-hf"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "i2vgen-xl" in lines[0]
    assert "img2vid models download i2vgen-xl" in lines[0] and "--model /path" in lines[0]
    assert "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.glob("*.mp4"))


def test_models_table_and_download_errors(tmp_path):
    env = offline_env(tmp_path / "hf")
    table = run_cli("models", cwd=tmp_path, env=env)
    assert table.returncode == 0
    assert "i2vgen-xl" in table.stdout and "cogvideox-5b-i2v" in table.stdout
    unknown = run_cli("models", "download", "nope", cwd=tmp_path, env=env)
    assert unknown.returncode == 2 and "unknown model 'nope'" in unknown.stderr
    offline = run_cli("models", "download", "svd-xt", cwd=tmp_path, env=env)
    assert offline.returncode == 2
    assert "cannot download svd-xt" in offline.stderr and "offline" in offline.stderr


def test_help_and_parser_do_not_import_torch(tmp_path):
    # building the CLI, importing the diffusion engine and creating it cost no torch import
    code = ("import sys; from img2vid.interfaces.cli import app as cli; cli.build_parser(); "
            "from img2vid.core.config import Settings; from img2vid.engines import create_engine; "
            "create_engine('diffusion', Settings()); "
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'huggingface_hub') "
            "if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=60, check=False)
    assert result.stdout.strip() == "[]", result.stderr
    help_text = run_cli("generate", "--help", cwd=tmp_path)
    assert "--memory" in help_text.stdout and "--motion-bucket-id" in help_text.stdout
