"""Settings: defaults, config.yaml, environment overrides and clear errors."""

from pathlib import Path

import pytest

from img2vid.core.config import load_settings
from img2vid.core.errors import InputError
from img2vid.core.request import OutputFormat


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IMG2VID_CONFIG", raising=False)
    s = load_settings()
    assert s.output.directory == Path("outputs") and s.output.format is OutputFormat.MP4
    assert s.output.prefix == "video_" and s.server.host == "127.0.0.1"


def test_file_in_working_directory_then_env_var_then_flag(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("output:\n  prefix: cwd_\n")
    (tmp_path / "env.yaml").write_text("output:\n  prefix: env_\n")
    (tmp_path / "flag.yaml").write_text("output:\n  prefix: flag_\n")
    monkeypatch.delenv("IMG2VID_CONFIG", raising=False)
    assert load_settings().output.prefix == "cwd_"
    monkeypatch.setenv("IMG2VID_CONFIG", str(tmp_path / "env.yaml"))
    assert load_settings().output.prefix == "env_"
    assert load_settings(tmp_path / "flag.yaml").output.prefix == "flag_"


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    (tmp_path / "c.yaml").write_text("output:\n  format: webm\n  directory: a\n")
    monkeypatch.setenv("IMG2VID_OUTPUT__DIRECTORY", "from-env")
    s = load_settings(tmp_path / "c.yaml")
    assert s.output.directory == Path("from-env") and s.output.format is OutputFormat.WEBM


@pytest.mark.parametrize("text, words", [
    ("output:\n  directroy: x\n", "unknown key 'output.directroy'"),
    ("outputs:\n  directory: x\n", "unknown key 'outputs'"),
    ("output:\n  format: avi\n", "output.format"),
    ("output: [1, 2\n", "not valid YAML at line"),
    ("- a\n- b\n", "must be a mapping"),
    ("images:\n  background: red\n", "images.background"),
    ("output:\n  prefix: ../x\n", "plain file-name prefix"),
    ("models:\n  devices: [gpu0]\n", "'gpu0' is not a device; use cuda:N, mps or cpu"),
    ("models:\n  devices: [cuda, 'cuda:0']\n", "names a device twice"),
])
def test_bad_config_is_one_clear_error(tmp_path, text, words):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(InputError) as err:
        load_settings(tmp_path / "c.yaml")
    assert words in str(err.value) and "\n" not in str(err.value)


def test_missing_config_file_named_explicitly(tmp_path):
    with pytest.raises(InputError, match="config file not found"):
        load_settings(tmp_path / "nope.yaml")


def test_devices_from_the_file_and_the_environment(tmp_path, monkeypatch):
    (tmp_path / "c.yaml").write_text("models:\n  devices: [cuda, 'cuda:1']\n")
    assert load_settings(tmp_path / "c.yaml").models.devices == ["cuda:0", "cuda:1"]
    monkeypatch.setenv("IMG2VID_MODELS__DEVICES", '["cuda:2"]')
    assert load_settings(tmp_path / "c.yaml").models.devices == ["cuda:2"]


def test_an_environment_list_that_is_not_json_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no config file: the environment alone
    monkeypatch.delenv("IMG2VID_CONFIG", raising=False)
    monkeypatch.setenv("IMG2VID_MODELS__DEVICES", "cuda:0")
    with pytest.raises(InputError) as err:
        load_settings()
    message = str(err.value)
    assert 'field "models"' in message and "IMG2VID_MODELS__DEVICES" in message
    assert """IMG2VID_MODELS__DEVICES='["cuda:0"]'""" in message and "\n" not in message
