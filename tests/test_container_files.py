"""Dockerfile and compose.yaml stay in step with the settings (scripts/container-test.sh runs them)."""

from __future__ import annotations

import re

import pytest
import yaml

from img2vid.core.config import load_settings
from tests.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())


def _dockerfile_env() -> dict[str, str]:
    env = {}
    for block in re.findall(r"^ENV (.*?)(?<!\\)$", DOCKERFILE, re.M | re.S):
        env.update(re.findall(r"(\w+)=(\S+)", block.replace("\\\n", " ")))
    return env


def _compose_default(value: str) -> str:
    """What compose puts in a variable when the user sets nothing: `${X:-default}` is the
    default, a required `${X:?...}` stands for any text."""
    match = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
    return match.group(1) if match else "x" if "${" in value else value


@pytest.mark.parametrize("service", sorted(COMPOSE["services"]))
def test_every_img2vid_variable_the_images_set_is_a_setting(service, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    compose_env = COMPOSE["services"][service]["environment"]
    env = {**_dockerfile_env(), **{k: _compose_default(v) for k, v in compose_env.items()}}
    for name, value in env.items():
        if name.startswith("IMG2VID_") and "__" in name:
            monkeypatch.setenv(name, value)
    settings = load_settings()  # an unknown IMG2VID_SECTION__KEY is an error
    assert str(settings.output.directory) == "/data/outputs"
    assert str(settings.logs.directory) == "/data/logs"
    assert settings.server.token == "x"


def test_compose_volumes_are_the_images_volumes_and_gpu_reserves_nvidia():
    (volumes,) = re.findall(r"^VOLUME \[(.*)\]$", DOCKERFILE, re.M)
    declared = set(re.findall(r'"([^"]+)"', volumes))
    for name, service in COMPOSE["services"].items():
        assert {v.split(":")[1] for v in service["volumes"]} == declared, name
        assert service["ports"] == ["${IMG2VID_PUBLISH:-127.0.0.1:7860}:7860"]
    gpu = COMPOSE["services"]["img2vid-gpu"]
    assert gpu["build"]["args"]["TORCH"] == "cuda" and "cuda)" in DOCKERFILE
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]


def test_image_serves_on_all_interfaces_as_non_root_with_a_healthcheck():
    assert 'CMD ["serve", "--host", "0.0.0.0"]' in DOCKERFILE
    assert re.search(r"^USER img2vid$", DOCKERFILE, re.M)
    assert re.search(r"^HEALTHCHECK .*/healthz", DOCKERFILE, re.M | re.S)
    # Every file the build copies is let through .dockerignore.
    kept = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
            if line.startswith("!")}
    for copy in re.findall(r"^COPY (?!--from=)(.*) \S+$", DOCKERFILE, re.M):  # from the context
        assert set(copy.split()) <= kept, copy
