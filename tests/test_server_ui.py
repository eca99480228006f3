"""The WebUI: a real headless Chromium (Debian's `chromium` package) and gradio_client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import av
import pytest

from tests.fakes import FakeEngine
from tests.live_server import PHOTO, LiveServer, fake_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser



class SlowWhenAsked(FakeEngine):
    """Fast, except when the prompt is "slow" (a job long enough to cancel)."""

    def generate(self, request, images, progress, cancel):  # type: ignore[no-untyped-def]
        self.delay = 0.1 if request.prompt == "slow" else 0.0
        return super().generate(request, images, progress, cancel)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with fake_server(tmp_path_factory.mktemp("ui"), SlowWhenAsked(), cpu_workers=2) as live:
        yield live


def test_browser_generates_and_plays_the_video(server: LiveServer, browser: Browser) -> None:
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
    # the file's name, never where the server keeps it
    saved = page.locator("#saved").get_by_role("textbox").input_value()
    assert saved == Path(saved).name and saved.endswith(".mp4")
    assert (server.settings.output.directory / saved).is_file()
    params = "".join(page.locator("#params").inner_text().split())
    assert '"preset":"preview"' in params and '"num_frames":16' in params
    root = str(server.settings.output.directory.parent)
    assert root not in page.content() and root not in params
    # the photos are removed once the job has them; the field says so
    assert "coffee" not in page.locator("#photos").inner_text()

    # The history shows it; one click puts its settings back into the form.
    page.locator("#frames").get_by_role("textbox").fill("99")
    page.locator("#history button.thumbnail-item").first.click()
    page.wait_for_function(
        "() => document.querySelector('#status').innerText.startsWith('Loaded')")
    assert page.locator("#frames").get_by_role("textbox").input_value() == "16"
    assert hosts == {server.base_url.split("/")[2]}  # nothing fetched off-machine


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
    assert (server.settings.output.directory / saved).is_file()
    assert str(server.settings.output.directory.parent) not in str(params)
    assert params["seed"] == 1234 and params["request"]["prompt"] == "a client"
    assert seed == "1234"


def test_camera_jobs_from_the_ui_record_no_seed_like_the_cli_and_api(server: LiveServer) -> None:
    from gradio_client import Client, handle_file

    client = Client(server.base_url + "/", verbose=False)
    status, *_, params, seed = client.predict(
        files=[handle_file(str(PHOTO))], resolution="256", num_frames="4", fps="6",
        randomize=True, api_name="/generate")[:5]
    client.close()
    assert status.startswith("Done in")
    assert params["seed"] is None and params["request"]["seed"] is None  # nothing was drawn


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


ATTACK_PAGE = """<!doctype html><meta charset="utf-8"><title>some other site</title><script>
async function photo() {
  const canvas = document.createElement("canvas"); canvas.width = 200; canvas.height = 160;
  const ctx = canvas.getContext("2d"); ctx.fillStyle = "#c84"; ctx.fillRect(0, 0, 200, 160);
  return await new Promise(done => canvas.toBlob(done, "image/png"));
}
async function attempt(name, run) {
  try { window.results[name] = await run(); } catch (e) { window.results[name] = "blocked"; }
}
async function attack(target) {
  window.results = {};
  const form = new FormData();
  form.append("images", await photo(), "a.png"); form.append("num_frames", "4");
  // a "simple" request: no preflight, the response is opaque but the server acts on it
  await attempt("submit_no_cors", async () => {
    await fetch(target + "/api/v1/jobs", {method: "POST", mode: "no-cors", body: form,
                                          credentials: "include"});
    return "sent"; });
  const call = JSON.stringify({data: [[{path: "/etc/hostname",
                                        meta: {_type: "gradio.FileData"}}]]});
  await attempt("gradio_no_cors", async () => {
    await fetch(target + "/gradio_api/call/generate", {method: "POST", mode: "no-cors",
      body: call, credentials: "include"}); return "sent"; });
  await attempt("gradio_cors", async () => {
    const r = await fetch(target + "/gradio_api/call/generate", {method: "POST",
      headers: {"Content-Type": "application/json"}, body: call, credentials: "include"});
    return await r.text(); });
  await attempt("read_jobs", async () => (await fetch(target + "/api/v1/jobs",
                                                      {credentials: "include"})).text());
  await attempt("read_config", async () => (await fetch(target + "/config",
                                                        {credentials: "include"})).text());
  return window.results;
}
</script>"""


def test_a_page_from_another_port_cannot_drive_the_server(server: LiveServer, browser: Browser,
                                                          tmp_path: Path) -> None:
    """The attack from a web page the user happens to visit, in a real browser: a page on
    another local port (another origin) sends the requests a browser lets any page send."""
    import http.server
    import threading

    (tmp_path / "index.html").write_text(ATTACK_PAGE)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    before = server.queue.list(limit=1)[1]
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{site.server_address[1]}/index.html")
        results = page.evaluate("target => attack(target)", server.base_url)
        assert results["submit_no_cors"] == "sent"  # the browser did send it...
        for read in ("gradio_cors", "read_jobs", "read_config"):
            assert results[read] == "blocked", (read, results[read])
        # ...and the server's own page, same browser, still works
        own = browser.new_page()
        own.goto(server.base_url + "/")
        status = own.evaluate("""async () => {
            const canvas = document.createElement("canvas");
            canvas.width = 200; canvas.height = 160;
            const blob = await new Promise(d => canvas.toBlob(d, "image/png"));
            const form = new FormData();
            form.append("images", blob, "a.png"); form.append("num_frames", "4");
            const r = await fetch("/api/v1/jobs", {method: "POST", body: form});
            return r.status; }""")
        assert status == 202
    finally:
        site.shutdown()
    jobs, total = server.queue.list(limit=5)
    assert total == before + 1  # only the same-origin one
    assert jobs[0].input_names == ("a.png",)


def test_the_api_docs_render_offline(server: LiveServer, browser: Browser) -> None:
    """/docs in a browser that can reach nothing but this server: Swagger UI's files come
    with the server, so the page renders every operation."""
    from playwright.sync_api import Route

    own = server.base_url.split("/")[2]
    elsewhere: list[str] = []

    def only_this_server(route: Route) -> None:
        if route.request.url.split("/")[2] == own:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page = browser.new_page()
    page.route("**/*", only_this_server)
    page.goto(server.base_url + "/docs")
    page.locator(".opblock-summary-path", has_text="/api/v1/jobs/{job_id}/video"
                 ).wait_for(timeout=30_000)
    assert page.locator(".opblock").count() >= 6
    assert elsewhere == []
