"""The Gradio WebUI: the form, live progress from the job queue, the result and a history."""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from img2vid.core.config import Settings
from img2vid.core.errors import InputError
from img2vid.core.request import (
    PRESET_DESCRIPTIONS,
    RESOLUTIONS,
    Easing,
    Motion,
    PresetName,
    Upscaler,
    VideoCodec,
)
from img2vid.core.sidecar import Sidecar
from img2vid.execution.jobqueue import JobQueue
from img2vid.execution.jobstore import JobStatus, QueueFullError, ShuttingDownError
from img2vid.interfaces.server import intake, shown, thumbnails
from img2vid.interfaces.server import webui_parts as parts
from img2vid.interfaces.server.catalog import list_models
from img2vid.interfaces.server.parking import Parking
from img2vid.interfaces.server.webform import (
    FROM_PRESET,
    NO_INTERPOLATION,
    NO_UPSCALE,
    diffusion_fields,
    finishing_fields,
    finishing_values,
    form_fields,
    plan_markdown,
)
from img2vid.media.outputs import STAGING_PREFIX

log = logging.getLogger(__name__)

HISTORY_SIZE = 24
MIN_UPDATE_INTERVAL = 0.25  # seconds between progress messages to one browser


class WebUI:
    """Builds the Blocks; every Generate goes through the same JobQueue as the API."""

    def __init__(self, settings: Settings, queue: JobQueue, parking: Parking) -> None:
        self.settings = settings
        self.queue = queue
        self.parking = parking
        # Videos the player shows are linked here, inside Gradio's cache (one folder per
        # output folder, so two servers never mix theirs).
        digest = hashlib.sha256(str(settings.output.directory.resolve()).encode()).hexdigest()
        self.shown_dir = parking.root / f"img2vid-shown-{digest[:12]}"
        self._session_jobs: dict[str, str] = {}  # browser session -> its running job
        self._lock = threading.Lock()
        self._thumbs: dict[tuple[str, int], np.ndarray] = {}

    def build(self) -> gr.Blocks:
        models = [m for m in list_models(self.settings) if m.engine == "diffusion"]
        ready = [m.name for m in models if m.available]
        missing = [m for m in models if not m.available]
        missing_text = "\n".join(f"- **{m.name}** is not available: {m.how_to_get}"
                                 for m in missing)
        if not models:
            missing_text = ("No diffusion model is set up on this server; the camera engine "
                            "needs none. Run `img2vid doctor` on the server to see what is "
                            "missing.")

        # delete_cache: Gradio keeps a copy of every video it shows; drop day-old copies.
        with gr.Blocks(title="img2vid", analytics_enabled=False,
                       delete_cache=(3600, 86400)) as demo:
            gr.Markdown("# img2vid\nTurn still photos into short videos: camera moves on "
                        "the CPU, or learned motion from a prompt with a diffusion model.")
            with gr.Row():
                with gr.Column(scale=1):
                    images = gr.File(label="Photos (several make a slideshow)",
                                     file_count="multiple", file_types=["image"],
                                     type="filepath", elem_id="photos")
                    prompt = gr.Textbox(label="Prompt", lines=2,
                                        placeholder="what should happen (diffusion engine); "
                                        "a longer clip: one per window, \"a | b | c\"")
                    negative = gr.Textbox(label="Negative prompt", placeholder="what to avoid")
                    with gr.Row():
                        engine = gr.Radio(["camera", "parallax", "diffusion"], value="camera",
                                          label="Engine")
                        model = gr.Dropdown(ready, value=ready[0] if ready else None,
                                            label="Model", interactive=False,
                                            info="diffusion models available on this server")
                    # how to get the models this server lacks: shown with the diffusion engine
                    missing_note = gr.Markdown(missing_text, elem_id="missing-models",
                                               visible=False)
                    end_frame = gr.Image(label="End frame (Wan FLF2V, Wan 2.2 A14B, "
                                         "SkyReels-V2 DF)", height=140,
                                         type="filepath", sources=["upload"], elem_id="end")
                    loras = gr.Textbox(label="LoRAs: hub ids, optional :scale, one per line",
                                       elem_id="loras")
                    lora_fuse = gr.Checkbox(False, label="Fuse LoRAs (faster steps)",
                                            elem_id="lora-fuse")
                    preset = gr.Radio([p.value for p in PresetName],
                                      value=PresetName.STANDARD.value, label="Preset",
                                      info=PRESET_DESCRIPTIONS[PresetName.STANDARD],
                                      elem_id="preset")
                    with gr.Accordion("Advanced", open=False, elem_id="advanced"):
                        resolution = gr.Dropdown(
                            [FROM_PRESET, *map(str, RESOLUTIONS)], value=FROM_PRESET,
                            label="Resolution (short side, px)", elem_id="resolution")
                        # Text, not gr.Number: a browser number box cannot be left empty,
                        # and empty means "from the preset". Seeds also pass 2**53.
                        with gr.Row():
                            num_frames = gr.Textbox(label="Frames", placeholder="from preset",
                                                    elem_id="frames")
                            fps = gr.Textbox(label="FPS", placeholder="preset or model default",
                                             elem_id="fps")
                        with gr.Row():
                            steps = gr.Textbox(label="Steps", placeholder="from preset")
                            guidance = gr.Textbox(label="Guidance", placeholder="model default")
                            guidance_2 = gr.Textbox(label="Guidance, low-noise expert",
                                                    placeholder="model default (Wan 2.2 A14B)",
                                                    elem_id="guidance-2")
                        with gr.Row():
                            seed = gr.Textbox(label="Seed", placeholder="random",
                                              elem_id="seed")
                            randomize = gr.Checkbox(True, label="Randomise seed")
                        with gr.Row():
                            motion = gr.Dropdown([m.value for m in Motion],
                                                 value=Motion.KEN_BURNS.value,
                                                 label="Camera motion")
                            easing = gr.Dropdown([e.value for e in Easing],
                                                 value=Easing.EASE_IN_OUT.value, label="Easing")
                        with gr.Row():
                            zoom = gr.Slider(1.0, 4.0, value=1.3, step=0.05, label="Zoom")
                            focus = gr.Textbox("auto", label="Focus (x,y fractions, or auto)")
                        interpolate = gr.Dropdown([NO_INTERPOLATION, "2", "3", "4"],
                                                  value=NO_INTERPOLATION,
                                                  label="Interpolation (multiply the fps)")
                    with gr.Accordion("Parallax: depth", open=False, elem_id="parallax"):
                        depth_map = gr.File(label="Depth map (brighter = nearer; empty: the "
                                            "server's depth model)", file_types=["image"],
                                            type="filepath", elem_id="depth")
                        depth_of_field = gr.Slider(0.0, 1.0, value=0.0, step=0.05,
                                                   label="Depth of field",
                                                   elem_id="depth-of-field")
                    with gr.Accordion("Finishing: sound, upscale, style, codec", open=False,
                                      elem_id="finishing"):
                        audio = gr.File(label="Soundtrack (mp4, webm, mkv outputs)",
                                        file_types=["audio"], type="filepath",
                                        elem_id="audio")
                        with gr.Row():
                            audio_offset = gr.Textbox(label="Start in the track (s)",
                                                      placeholder="0", elem_id="audio-offset")
                            fit_to_audio = gr.Checkbox(False, label="Last as long as the track",
                                                       elem_id="fit-to-audio")
                        with gr.Row():
                            upscale = gr.Dropdown([NO_UPSCALE, "2", "4"], value=NO_UPSCALE,
                                                  label="Upscale", elem_id="upscale")
                            upscaler = gr.Dropdown([u.value for u in Upscaler],
                                                   value=Upscaler.MODEL.value, label="Upscaler "
                                                   "(model: the server's)", elem_id="upscaler")
                        style = gr.File(label="Style painting (optional)",
                                        file_types=["image"], type="filepath", elem_id="style")
                        style_strength = gr.Slider(0.0, 1.0, value=1.0, step=0.05,
                                                   label="Style strength",
                                                   elem_id="style-strength")
                        codec = gr.Dropdown([c.value for c in VideoCodec],
                                            value=VideoCodec.H264.value,
                                            label="Video codec (mp4)", elem_id="codec")
                    with gr.Row():
                        generate_btn = gr.Button("Generate", variant="primary",
                                                 elem_id="generate")
                        cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel")
                        check_btn = gr.Button("Check", elem_id="check")
                with gr.Column(scale=1):
                    status = gr.Markdown("Upload a photo and press Generate.",
                                         elem_id="status")
                    live = gr.Image(label="Live preview", type="filepath", interactive=False,
                                    height=160, elem_id="live-preview")
                    video = gr.Video(label="Video", format=None, interactive=False,
                                     elem_id="result")
                    saved = gr.Textbox(label="Saved to", interactive=False, elem_id="saved")
                    params = gr.JSON(label="Parameters used", elem_id="params")
            history_paths = gr.State([])
            history = gr.Gallery(label="History: click one to load its settings",
                                 columns=6, height=260, fit_columns=False,
                                 allow_preview=False, object_fit="cover",
                                 interactive=False, elem_id="history")

            form = [prompt, negative, engine, model, preset, resolution, num_frames, fps,
                    steps, guidance, seed, randomize, motion, zoom, focus, easing, interpolate]
            finishing = [audio, audio_offset, fit_to_audio, upscale, upscaler, style,
                         style_strength, codec]
            generate_btn.click(
                self.generate,
                inputs=[images, *form, *finishing, depth_map, depth_of_field, end_frame, loras,
                        guidance_2, lora_fuse],
                outputs=[status, video, saved, params, seed, history, history_paths, images,
                         live],
                api_name="generate", concurrency_limit=None)  # the job queue limits, not Gradio
            cancel_btn.click(self.cancel, outputs=[status], api_name="cancel", queue=False)
            check_btn.click(self.check, inputs=[images, *form], outputs=[status, params])
            engine.change(lambda name: (
                gr.update(interactive=name == "diffusion" and bool(ready)),
                gr.update(visible=name == "diffusion" and bool(missing_text))),
                inputs=[engine], outputs=[model, missing_note], api_visibility="private")
            preset.change(lambda name: gr.update(info=PRESET_DESCRIPTIONS[PresetName(name)]),
                          inputs=[preset], outputs=[preset], api_visibility="private")
            history.select(self.load_from_history, inputs=[history_paths],
                           outputs=[*form, *finishing, video, saved, params, status],
                           api_visibility="private")
            demo.load(self.history, outputs=[history, history_paths], api_visibility="private")
        return demo

    # --- handlers -------------------------------------------------------------------------

    def check(self, files: list[str] | None, *form: Any) -> tuple[str, dict[str, Any]]:
        """The plan a run would follow (model, size, frames, dtypes, memory), nothing queued."""
        try:  # headers are read: only files this server received as uploads
            return plan_markdown(self.queue, [str(f) for f in self.parking.verify(files or [])],
                                 form)
        except InputError as exc:
            raise gr.Error(str(exc)) from None

    def generate(self, files: list[str] | None, prompt: str | None = None,
                 negative: str | None = None, engine: str = "camera",
                 model: str | None = None, preset: str = PresetName.STANDARD.value,
                 resolution: str = FROM_PRESET, num_frames: str | None = None,
                 fps: str | None = None, steps: str | None = None,
                 guidance: str | None = None, seed: str | None = None,
                 randomize: bool = True, motion: str = Motion.KEN_BURNS.value,
                 zoom: float = 1.3, focus: str = "auto", easing: str = Easing.EASE_IN_OUT.value,
                 interpolate: str = NO_INTERPOLATION, audio: str | None = None,
                 audio_offset: str | None = None, fit_to_audio: bool = False,
                 upscale: str = NO_UPSCALE, upscaler: str = Upscaler.MODEL.value,
                 style: str | None = None, style_strength: float = 1.0,
                 codec: str = VideoCodec.H264.value, depth_map: str | None = None,
                 depth_of_field: float = 0.0, end_frame: str | None = None,
                 loras: str | None = None, guidance_2: str | None = None,
                 lora_fuse: bool = False, request: gr.Request | None = None,
                 progress: gr.Progress = gr.Progress()) -> Iterator[tuple[Any, ...]]:  # noqa: B008
        """Queue the job, stream its progress, then show the video and what was used."""
        if not files:
            raise gr.Error("Upload at least one photo first.")
        named = [(name, path) for name, path in (("audio", audio), ("style", style),
                                                 ("depth", depth_map), ("last_image", end_frame))
                 if path]
        try:  # only files this server received as uploads; never a path a client names
            parked = self.parking.claim([*files, *(path for _, path in named)])
        except InputError as exc:
            raise gr.Error(str(exc)) from None
        seed = str(seed or "").strip() or None
        if engine == "diffusion" and (randomize or not seed):
            seed = str(random.randrange(2**31))  # the camera engine draws nothing: no seed
        fields = {**form_fields(prompt, negative, engine, model, preset, resolution, num_frames,
                                fps, steps, guidance, seed, motion, zoom, focus, easing,
                                interpolate),
                  **finishing_fields(audio, audio_offset, fit_to_audio, upscale, upscaler, style,
                                     style_strength, codec),
                  **intake.clean_fields({"depth_of_field": depth_of_field or None}),
                  **diffusion_fields(guidance_2, lora_fuse),
                  "lora": [x.strip() for x in (loras or "").splitlines() if x.strip()] or None}
        photos = [intake.Upload(f.name, f) for f in parked[:len(files)]]
        extra = {name: intake.Upload(f.name, f) for (name, _), f in zip(named, parked[len(files):])}
        try:
            job = intake.submit(self.queue, fields, photos, extra)
        except (QueueFullError, ShuttingDownError, InputError, intake.StorageError) as exc:
            raise gr.Error(str(exc)) from None
        finally:
            self.parking.release(parked)  # the job has its own copies (or was refused)
        session = getattr(request, "session_hash", None) or job.id
        with self._lock:
            self._session_jobs[session] = job.id
        skip = gr.skip()
        try:
            yield (shown.describe(job), skip, skip, skip, seed, skip, skip, skip, None)
            last = time.monotonic()
            version = -1
            latest: tuple[int, str | None] = (0, None)  # version and path of the live preview
            while not job.status.terminal:
                if self.queue.closing:
                    note = ("The server is shutting down; this job is saved and runs after it "
                            "restarts.")
                    yield (note, skip, skip, skip, skip, skip, skip, skip, skip)
                    return
                version = self.queue.wait_for_change(version, timeout=1.0)
                job = self.queue.get(job.id) or job
                pause = MIN_UPDATE_INTERVAL - (time.monotonic() - last)
                if pause > 0 and not job.status.terminal:
                    time.sleep(pause)  # coalesce per-frame updates into a few per second
                    continue
                last = time.monotonic()
                fraction = job.progress.fraction if job.progress else None
                progress(fraction or 0.0, desc=shown.describe(job))
                latest = self.queue.previews.newer(job.id, latest[0])
                yield (shown.describe(job), skip, skip, skip, skip, skip, skip, skip,
                       thumbnails.live_preview(self.shown_dir, job.id, *latest) or skip)
        finally:
            with self._lock:
                if self._session_jobs.get(session) == job.id:
                    del self._session_jobs[session]

        if job.status is JobStatus.FAILED:
            raise gr.Error(f"Failed: {job.error}")
        if job.status is JobStatus.CANCELLED:
            yield ("Cancelled; no file was written.", None, "", None, seed, skip, skip, None,
                   skip)
            return
        output = Path(job.output or "")
        gallery, paths = self.history()
        # Names only: where the server keeps its files is not the browser's business.
        yield (shown.describe(job), thumbnails.playable(output, self.shown_dir), output.name,
               shown.parameters_used(job.sidecar), seed, gallery, paths, None, skip)

    def cancel(self, request: gr.Request | None = None) -> str:
        session = getattr(request, "session_hash", None)
        with self._lock:
            job_id = self._session_jobs.get(session or "")
        if job_id is None:
            return "Nothing to cancel."
        job = self.queue.cancel(job_id)
        return "Cancelling..." if job and not job.status.terminal else "Cancelled."

    def history(self) -> tuple[list[tuple[np.ndarray, str]], list[str]]:
        """Newest outputs first, from their sidecars: (thumbnail, caption) and sidecar paths."""
        folder = self.settings.output.directory
        sidecars = sorted((p for p in folder.glob("*.json")
                           if not p.name.startswith(STAGING_PREFIX)),
                          key=parts.mtime, reverse=True)
        items, paths = [], []
        for path in sidecars:
            if len(items) >= HISTORY_SIZE:
                break
            try:
                info = Sidecar.read(path)
                output = Path(info.output.path)
                thumb = self._thumbnail(output)
            except (OSError, ValueError) as exc:
                log.debug("history: skipping %s (%s)", path, exc)
                continue
            request = info.request.summary() if info.request else {}
            caption = f"{output.name} · {request.get('engine', '?')}"
            if request.get("prompt"):
                caption += f" · {request['prompt'][:40]}"
            items.append((thumb, caption))
            paths.append(str(path))
        return items, paths

    def load_from_history(self, paths: list[str], evt: gr.SelectData) -> tuple[Any, ...]:
        """Put a past output's settings back into the form (and show that video)."""
        index = evt.index
        if not isinstance(index, int) or not 0 <= index < len(paths):
            raise gr.Error("That item is no longer in the history; reload the page.")
        try:
            info = Sidecar.read(Path(paths[index]))
        except (OSError, ValueError):
            raise gr.Error("Its sidecar can no longer be read.") from None
        req = info.request.summary() if info.request else {}
        output = Path(info.output.path)
        focus = req.get("focus", "auto")
        form = (req.get("prompt", ""), req.get("negative_prompt", ""),
                req.get("engine", "camera"), req.get("model"),
                req.get("preset", PresetName.STANDARD.value),
                str(req["resolution"]) if req.get("resolution") else FROM_PRESET,
                *(parts.field_text(req.get(k)) for k in ("num_frames", "fps", "num_inference_steps",
                                                "guidance_scale")),
                parts.field_text(info.seed), False,
                req.get("motion", Motion.KEN_BURNS.value), req.get("zoom", 1.3),
                ",".join(map(str, focus)) if isinstance(focus, list) else focus,
                req.get("easing", Easing.EASE_IN_OUT.value),
                str(req["interpolate"]) if req.get("interpolate") else NO_INTERPOLATION)
        finishing, reupload = finishing_values(req)
        return (*form, *finishing, thumbnails.playable(output, self.shown_dir), output.name,
                shown.parameters_used(info), f"Loaded the settings of {output.name}.{reupload}")

    def _thumbnail(self, output: Path) -> np.ndarray:
        key = (str(output), output.stat().st_mtime_ns)
        if key not in self._thumbs:
            if len(self._thumbs) > 4 * HISTORY_SIZE:
                self._thumbs.clear()
            self._thumbs[key] = thumbnails.first_frame(output)
        return self._thumbs[key]
