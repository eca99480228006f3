"""The WebUI's diffusion extras in a real headless Chromium: an end frame upload, LoRAs (fused),
the low-noise expert's guidance reach the job, and the live preview shows while it runs (a fake engine sends previews)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from img2vid.core.config import ModelSettings
from img2vid.core.progress import Progress
from tests.fakes import FakeEngine
from tests.live_server import PHOTO, LiveServer, live_server, make_settings

if TYPE_CHECKING:
    from playwright.sync_api import Browser


class Previewing(FakeEngine):
    """Sends a preview image on each of 12 slow "denoising" steps before the frames."""

    def generate(self, request, images, progress, cancel):  # type: ignore[no-untyped-def]
        for step in range(1, 13):
            time.sleep(0.25)
            cancel.raise_if_cancelled()
            shade = np.full((32, 96, 3), step * 20, np.uint8)
            progress(Progress("denoise", step, 12, preview=shade))
        return super().generate(request, images, progress, cancel)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, FakeEngine]]:
    engine = Previewing()
    root = tmp_path_factory.mktemp("ui-diffusion")
    (root / "tiny").mkdir()
    settings = make_settings(root).model_copy(
        update={"models": ModelSettings(local_dirs={"tiny": root / "tiny"})})
    with live_server(settings, lambda name, *_: engine, ui=True, cpu_workers=1) as live:
        yield live, engine


def test_end_frame_loras_and_live_preview_in_the_browser(server, browser: Browser,
                                                         tmp_path: Path) -> None:
    live, engine = server
    page = browser.new_page()
    page.goto(live.base_url + "/")
    page.locator("#photos input[type=file]").set_input_files(str(PHOTO))
    page.wait_for_function(
        "() => { const t = document.querySelector('#photos').innerText;"
        " return t.includes('coffee') && !t.includes('Uploading'); }")
    page.get_by_label("diffusion", exact=True).check()
    page.locator("#end input[type=file]").set_input_files(str(PHOTO))
    page.wait_for_function("() => document.querySelector('#end img') !== null")
    page.locator("#loras").get_by_role("textbox").fill("org/style:0.7\norg/other")
    page.locator("#lora-fuse input[type=checkbox]").check()
    page.get_by_text("Advanced").click()
    page.locator("#frames").get_by_role("textbox").fill("8")
    page.locator("#guidance-2").get_by_role("textbox").fill("2.5")
    page.locator("#generate").click()
    # the live preview appears while the job is still running
    page.wait_for_function(
        "() => document.querySelector('#live-preview img') !== null", timeout=30_000)
    assert not page.locator("#status").inner_text().startswith("Done")
    page.wait_for_function(
        "() => document.querySelector('#status').innerText.startsWith('Done')",
        timeout=60_000)
    request = engine.calls[-1]
    assert request.model == "tiny" and request.lora == ("org/style:0.7", "org/other")
    assert request.lora_fuse is True and request.guidance_scale_2 == 2.5
    assert request.last_image is not None and Path(request.last_image).parent.name == "last_image"
