"""`models.default`: the diffusion model of `--engine diffusion` without `--model` is a config
key (I2VGen-XL unless set); an unknown name is refused with one line listing the models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from img2vid.engines.diffusion.registry import MODELS


def _generate(args: list[str], capsys) -> tuple[int, str, str]:
    from img2vid.interfaces.cli.app import main

    code = main(["generate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import huggingface_hub.constants

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("IMG2VID_MODELS__CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return tmp_path


def test_without_the_key_the_default_is_i2vgen_xl(offline, small_photo, capsys):
    assert "i2vgen-xl" in MODELS  # still registered, the seed's model
    code, out, err = _generate([str(small_photo), "--engine", "diffusion", "--dry-run",
                                "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["model"] == "i2vgen-xl"


def test_the_key_picks_the_model_of_engine_diffusion(offline, small_photo, wan_dir, capsys,
                                                     monkeypatch):
    config = offline / "config.yaml"
    config.write_text(f"models:\n  default: tiny-wan\n  local_dirs:\n    tiny-wan: {wan_dir}\n")
    out = offline / "x.mp4"
    code, _, err = _generate(["--config", str(config), str(small_photo), "--engine",
                              "diffusion", "--width", "64", "--height", "64", "--num-frames",
                              "5", "--num-inference-steps", "2", "--seed", "1", "-o", str(out)],
                             capsys)
    assert code == 0, err
    model = json.loads(out.with_name(out.name + ".json").read_text())["engine_info"]["model"]
    assert (model["name"], model["path"], model["family"]) == ("tiny-wan", str(wan_dir), "wan")
    # a registered name from the environment, planned without the weights
    monkeypatch.setenv("IMG2VID_MODELS__DEFAULT", "svd-xt")
    code, plan, err = _generate([str(small_photo), "--engine", "diffusion", "--dry-run",
                                 "--json"], capsys)
    assert code == 0, err
    assert json.loads(plan)["model"] == "svd-xt"


def test_an_unknown_default_is_one_line_listing_the_models(offline, small_photo, capsys,
                                                           monkeypatch):
    monkeypatch.setenv("IMG2VID_MODELS__DEFAULT", "no-such-model")
    out = offline / "x.mp4"
    code, _, err = _generate([str(small_photo), "--engine", "diffusion", "-o", str(out)],
                             capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "no-such-model" in lines[0] and "i2vgen-xl" in lines[0]
    assert all(name in lines[0] for name in MODELS)
    assert not out.exists()
