"""The WebUI form as request fields, and the Check button's plan (nothing queued)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from img2vid.core.errors import InputError
from img2vid.core.request import Upscaler, VideoCodec
from img2vid.execution.jobqueue import JobQueue
from img2vid.interfaces.server import intake

FROM_PRESET = "preset"
NO_INTERPOLATION = "off"
NO_UPSCALE = "off"


def form_fields(prompt: str | None, negative: str | None, engine: str, model: str | None,
            preset: str, resolution: str, num_frames: str | None, fps: str | None,
            steps: str | None, guidance: str | None, seed: str | None, motion: str,
            zoom: float, focus: str, easing: str, interpolate: str) -> dict[str, Any]:
    """The form as request fields. Values stay text: the request parses them, so errors read
    as they do in the CLI."""
    return intake.clean_fields({
        "prompt": prompt, "negative_prompt": negative, "engine": engine,
        "model": model if engine == "diffusion" else None, "preset": preset,
        "resolution": None if resolution == FROM_PRESET else resolution,
        "num_frames": text(num_frames), "fps": text(fps),
        "num_inference_steps": text(steps), "guidance_scale": text(guidance),
        "seed": seed, "motion": motion, "zoom": zoom, "focus": focus, "easing": easing,
        "interpolate": None if interpolate == NO_INTERPOLATION else interpolate,
    })


def diffusion_fields(guidance_2: str | None, lora_fuse: bool) -> dict[str, Any]:
    """The two-expert guidance and the LoRA fuse switch as request fields."""
    return intake.clean_fields({"guidance_scale_2": text(guidance_2),
                                "lora_fuse": True if lora_fuse else None})


def finishing_fields(audio: str | None, audio_offset: str | None, fit_to_audio: bool,
                     upscale: str, upscaler: str, style: str | None, style_strength: float,
                     codec: str) -> dict[str, Any]:
    """The soundtrack, upscaling, style and codec part of the form as request fields."""
    return intake.clean_fields({
        "audio_offset": text(audio_offset) if audio else None,
        "fit_to_audio": True if audio and fit_to_audio else None,
        "upscale": None if upscale == NO_UPSCALE else upscale,
        "upscaler": upscaler if upscale != NO_UPSCALE else None,
        "style_strength": style_strength if style else None,
        "codec": None if codec == VideoCodec.H264.value else codec})


def finishing_values(req: dict[str, Any]) -> tuple[tuple[Any, ...], str]:
    """A past request's finishing part as the form shows it (the inverse of
    finishing_fields), and a note naming its soundtrack and painting: the server kept them only
    while the job ran, so the user uploads them again, as they do the photos."""
    audio, style = (Path(req[k]).name if req.get(k) else None for k in ("audio", "style"))
    values = (None, "" if not req.get("audio_offset") else f"{req['audio_offset']:g}",
              bool(req.get("fit_to_audio")),
              str(req["upscale"]) if req.get("upscale") else NO_UPSCALE,
              req.get("upscaler") or Upscaler.MODEL.value, None,
              float(req.get("style_strength", 1.0)), req.get("codec") or VideoCodec.H264.value)
    named = [f"the soundtrack {audio}" if audio else "", f"the style painting {style}"
             if style else ""]
    again = " and ".join(n for n in named if n)
    return values, (f" Upload {again} again to reuse {'them' if all(named) else 'it'}."
                    if again else "")


def text(value: object) -> str | None:
    return None if value is None else str(value).strip()


def plan_markdown(queue: JobQueue, files: list[str] | None, form: tuple[Any, ...]
                  ) -> tuple[str, dict[str, Any]]:
    """The plan a run of this form would follow, as Markdown and as data. `form`: the WebUI's
    values in its order (prompt ... seed, randomize, motion ... interpolate)."""
    from img2vid.execution.plan import describe_plan

    if not files:
        raise InputError("Upload at least one photo first.")
    values = list(form)
    randomize = values.pop(11)  # the seed stays unset when a random one is asked for
    values[10] = None if randomize else values[10]
    fields = form_fields(*values)
    uploads = [intake.Upload(Path(f).name, Path(f)) for f in files]
    plan = intake.submit(queue, fields, uploads, dry_run=True)
    return "**Plan** (nothing queued)\n\n" + "  \n".join(describe_plan(plan)), plan
