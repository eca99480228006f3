"""The public Python API: the README's example runs as written, `import img2vid` is instant."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

import img2vid
from tests.conftest import ROOT, _cli_env


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_works_as_written(tmp_path) -> None:
    code = _readme_example()
    assert len(code.strip().splitlines()) == 3
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "coffee.png", tmp_path / "examples")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_cli_env(None),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    path, frames, seconds = done.stdout.split()
    assert (tmp_path / path).is_file()  # tmp_path / an absolute path is that path
    assert int(frames) > 0 and float(seconds) == pytest.approx(3, abs=0.1)


def test_importing_the_package_loads_nothing_heavy() -> None:
    code = ("import sys, img2vid; heavy = {'torch', 'cv2', 'numpy', 'av', 'pydantic'} & "
            "set(sys.modules); assert not heavy, heavy; print(img2vid.__version__)")
    done = subprocess.run([sys.executable, "-c", code], env=_cli_env(None),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == img2vid.__version__


def test_generate_returns_a_result_and_raises_one_line_errors(tmp_path) -> None:
    settings = img2vid.Settings(output={"directory": str(tmp_path)})
    result = img2vid.generate(ROOT / "examples" / "coffee.png", settings=settings,
                              preset="preview", duration=1, fps=8, resolution=256)
    assert isinstance(result, img2vid.Result)
    assert result.path.is_file() and result.path.parent == tmp_path
    assert result.frames == 8 and result.seconds == pytest.approx(1)
    assert isinstance(result.sidecar, img2vid.Sidecar)
    assert result.sidecar.output.frames == result.frames
    assert result.sidecar.request.duration == 1
    with pytest.raises(img2vid.InputError, match="duration"):
        img2vid.generate(ROOT / "examples" / "coffee.png", settings=settings, duration=0)
    with pytest.raises(img2vid.InputError, match="image not found"):
        img2vid.generate(tmp_path / "missing.jpg", settings=settings, preset="preview")
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".mp4"]
