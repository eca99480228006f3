"""The WebUI: a real headless Chromium (Debian's `chromium` package) and gradio_client."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from tests.fakes import FakeEngine
from tests.live_server import PHOTO, LiveServer, live_server, make_settings

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


class SlowWhenAsked(FakeEngine):
    """Fast, except when the prompt is "slow" (a job long enough to cancel)."""

    def generate(self, request, images, progress, cancel):  # type: ignore[no-untyped-def]
        self.delay = 0.1 if request.prompt == "slow" else 0.0
        return super().generate(request, images, progress, cancel)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    engine = SlowWhenAsked()
    settings = make_settings(tmp_path_factory.mktemp("ui"))
    with live_server(settings, lambda name, *_: engine, ui=True, cpu_workers=2) as live:
        yield live


def test_browser_generates_and_plays_the_video(server: LiveServer) -> None:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is needed: apt-get install -y chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            hosts: set[str] = set()
            page.on("request", lambda r: hosts.add(r.url.split("/")[2]))
            page.goto(server.base_url + "/")
            # how to get the diffusion models shows only once that engine is picked
            notes = page.locator("#missing-models")
            assert not notes.is_visible()
            page.get_by_label("diffusion", exact=True).check()
            notes.get_by_text("img2vid models download i2vgen-xl").wait_for()
            page.get_by_label("camera", exact=True).check()
            notes.wait_for(state="hidden")
            page.locator("#photos input[type=file]").set_input_files(str(PHOTO))
            page.wait_for_function(
                "() => { const t = document.querySelector('#photos').innerText;"
                " return t.includes('coffee') && !t.includes('Uploading'); }")
            page.get_by_text("Advanced").click()
            page.locator("#frames").get_by_role("textbox").fill("16")
            page.locator("#fps").get_by_role("textbox").fill("8")
            page.locator("#resolution input").click()
            page.get_by_role("option", name="256", exact=True).click()
            page.locator("#preset").get_by_text("preview", exact=True).click()
            page.get_by_text("fast look: camera 720p").wait_for()  # the preset says what it is
            # Check shows the plan a run would follow, and queues nothing
            page.locator("#check").click()
            page.wait_for_function(
                "() => document.querySelector('#status').innerText.includes('Plan')")
            plan = page.locator("#status").inner_text()
            assert "width: 384" in plan and "height: 256" in plan and "num_frames: 16" in plan
            assert server.queue.counts().get("queued", 0) == 0
            page.locator("#generate").click()

            page.wait_for_function(
                "() => { const v = document.querySelector('#result video');"
                " return v !== null && v.readyState >= 2; }", timeout=60_000)
            state = page.evaluate(
                "() => { const v = document.querySelector('#result video');"
                " return {ready: v.readyState, duration: v.duration, width: v.videoWidth,"
                " height: v.videoHeight}; }")
            assert state["ready"] >= 2
            assert state["duration"] == pytest.approx(16 / 8, abs=0.05)
            assert (state["width"], state["height"]) == (384, 256)
            assert page.locator("#status").inner_text().startswith("Done in")
            saved = page.locator("#saved").get_by_role("textbox").input_value()
            assert Path(saved).parent == server.settings.output.directory.resolve()
            assert Path(saved).is_file()
            params = "".join(page.locator("#params").inner_text().split())
            assert '"preset":"preview"' in params and '"num_frames":16' in params

            # The history shows it; one click puts its settings back into the form.
            page.locator("#frames").get_by_role("textbox").fill("99")
            page.locator("#history button.thumbnail-item").first.click()
            page.wait_for_function(
                "() => document.querySelector('#status').innerText.startsWith('Loaded')")
            assert page.locator("#frames").get_by_role("textbox").input_value() == "16"
            assert hosts == {server.base_url.split("/")[2]}  # nothing fetched off-machine
        finally:
            browser.close()


def test_gradio_client_gets_a_video_back(server: LiveServer) -> None:
    from gradio_client import Client, handle_file

    client = Client(server.base_url + "/", verbose=False)
    status, video, saved, params, seed, *_ = client.predict(
        files=[handle_file(str(PHOTO))], prompt="a client", resolution="256",
        num_frames="6", fps="6", randomize=False, seed="1234", api_name="/generate")
    client.close()
    assert status.startswith("Done in")
    with av.open(video) as container:
        stream = container.streams.video[0]
        assert sum(1 for _ in container.decode(stream)) == 6
        assert (stream.codec_context.width, stream.codec_context.height) == (384, 256)
    assert Path(saved).is_file()
    assert params["seed"] == 1234 and params["request"]["prompt"] == "a client"
    assert seed == "1234"


def test_the_ui_reports_bad_input_like_the_cli(server: LiveServer) -> None:
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(server.base_url + "/", verbose=False)
    with pytest.raises(AppError, match="fps=500: allowed range is 1 to 120"):
        client.predict(files=[handle_file(str(PHOTO))], fps="500",
                       api_name="/generate")
    client.close()


def test_cancel_in_the_ui_stops_the_job(server: LiveServer) -> None:
    from gradio_client import Client, handle_file

    client = Client(server.base_url + "/", verbose=False)
    job = client.submit(files=[handle_file(str(PHOTO))], prompt="slow", negative="",
                        resolution="256", num_frames="100", fps="10", api_name="/generate")
    deadline = time.monotonic() + 30
    while not any(j.status.value == "running" for j in server.queue.list(limit=5)[0]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.predict(api_name="/cancel") in ("Cancelling...", "Cancelled.")
    status, video, saved, *_ = job.result(timeout=30)
    client.close()
    assert status == "Cancelled; no file was written."
    assert video is None and saved == ""
    latest = server.queue.list(limit=1)[0][0]
    assert latest.status.value == "cancelled" and latest.output is None
