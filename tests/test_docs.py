"""The docs stay true: the example config is the defaults, the README leads with two commands."""

from img2vid.core.config import Settings, load_settings
from tests.conftest import ROOT


def test_example_config_lists_exactly_the_defaults():
    assert load_settings(ROOT / "config.example.yaml") == Settings()


def test_readme_starts_with_the_demo_and_test_commands():
    head = (ROOT / "README.md").read_text().splitlines()[:6]
    assert any(line.startswith("make demo") for line in head)
    assert any(line.startswith("make test") for line in head)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
