"""GenerationRequest: the one typed, validated request every interface builds, with presets."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from img2vid.core.choices import (
    Easing,
    EncoderKind,
    EngineKind,
    InterpolatorKind,
    LoopMode,
    MemoryLevel,
    Motion,
    OutputFormat,
    PresetName,
    Quantize,
    StepCache,
    TransitionStyle,
    Upscaler,
    VideoCodec,
)
from img2vid.core.errors import InputError
from img2vid.core.lora import check_loras
from img2vid.core.sizes import output_size  # noqa: F401  (its callers import it from here)
from img2vid.core.validation import allowed_range, one_line

# Short side of the output in pixels; the long side follows the photo's aspect ratio.
RESOLUTIONS = (256, 360, 480, 512, 540, 576, 720, 768, 1024, 1080, 1440, 2160)
ENCODE_SPEEDS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
)
MAX_FRAMES = 3600
MAX_DURATION = 120.0  # seconds
# Fields that name a file or folder (a manifest's relative paths are relative to it).
PATH_FIELDS = ("audio", "style", "style_weights", "upscale_model", "rife_weights", "depth",
               "depth_model", "last_image")

# Values a preset fills in when the request leaves them unset, per engine.
PRESETS: dict[EngineKind, dict[PresetName, dict[str, Any]]] = {
    EngineKind.CAMERA: {
        PresetName.PREVIEW: {"resolution": 720, "fps": 24, "duration": 4.0, "crf": 23,
                             "encode_speed": "veryfast"},
        PresetName.STANDARD: {"resolution": 1080, "fps": 30, "duration": 5.0, "crf": 18,
                              "encode_speed": "medium"},
        PresetName.HIGH: {"resolution": 1440, "fps": 30, "duration": 6.0, "crf": 17,
                          "encode_speed": "slow"},
        PresetName.MAX: {"resolution": 2160, "fps": 30, "duration": 8.0, "crf": 16,
                         "encode_speed": "slow"},
    },
    # A diffusion preset is a quality tier relative to the model: size, frames, steps,
    # guidance and fps come from the model's registry entry (engines/diffusion/registry.py)
    # when the request leaves them unset; only the encoding is set here.
    EngineKind.DIFFUSION: {name: {"crf": 18, "encode_speed": "medium"} for name in PresetName},
}
PRESETS[EngineKind.PARALLAX] = PRESETS[EngineKind.CAMERA]  # same clips, moved through depth

# Motions only the parallax engine can make (a flat photo has no depth to move through).
PARALLAX_ONLY_MOTIONS = frozenset({
    Motion.DOLLY_IN, Motion.DOLLY_OUT, Motion.TRUCK_LEFT, Motion.TRUCK_RIGHT,
    Motion.PEDESTAL_UP, Motion.PEDESTAL_DOWN, Motion.ORBIT, Motion.CIRCLE, Motion.VERTIGO})

PRESET_DESCRIPTIONS = {
    PresetName.PREVIEW: "fast look: camera 720p 24 fps 4 s; diffusion: the model's size, about "
                        "half its frames and steps (I2VGen-XL 512p, 8 frames, 30 steps)",
    PresetName.STANDARD: "default: camera 1080p 30 fps 5 s; diffusion: the model's native size, "
                         "frames and steps (I2VGen-XL 512p, 16 frames, 50 steps)",
    PresetName.HIGH: "camera 1440p 30 fps 6 s; diffusion: native, 1.5x the steps "
                     "(I2VGen-XL 768p, 24 frames, 80 steps)",
    PresetName.MAX: "camera 2160p 30 fps 8 s; diffusion: native, 2x the steps "
                    "(I2VGen-XL 1024p, 32 frames, 100 steps)",
}


class GenerationRequest(BaseModel):
    """Everything needed to make one video. Frozen; presets are resolved when it is built.

    Field names follow diffusers' vocabulary where the two engines share a meaning.
    Unset optional fields are filled from the preset for the chosen engine.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    images: tuple[str, ...] = Field(min_length=1, max_length=200,
                                    description="input image path(s); several make a slideshow")
    last_image: str | None = Field(None, min_length=1, description="image the video ends on "
                                   "(diffusion models trained for it: Wan FLF2V, Wan 2.2 A14B)")
    engine: EngineKind | None = Field(None, description="camera (default), diffusion (chosen "
                                  "automatically with --model) or parallax (with --depth, "
                                  "--depth-model or a parallax motion)")
    model: str | None = Field(None, description="diffusion model name or local folder")
    revision: str | None = Field(None, min_length=1, max_length=100,
                                 description="hub commit, branch or tag of a named model "
                                 "(default: the commit first downloaded, kept in a lock file)")
    preset: PresetName = Field(PresetName.STANDARD, description="preset filling unset values: "
                               "preview, standard, high, max")
    prompt: str = Field("", max_length=2000, description="what should happen in the video; "
                        "a longer diffusion clip takes one per window: \"a | b | c\" (a list "
                        "in the API and manifests)")
    negative_prompt: str = Field("", max_length=2000, description="what to avoid")
    resolution: int | None = Field(None, description="short side in px, aspect ratio kept: "
                                   + ", ".join(map(str, RESOLUTIONS)))
    width: int | None = Field(None, ge=64, le=4096, description="output width in px")
    height: int | None = Field(None, ge=64, le=4096, description="output height in px")
    num_frames: int | None = Field(None, ge=1, le=MAX_FRAMES, description="frames in the clip")
    fps: int | None = Field(None, ge=1, le=120, description="frames per second (diffusion: "
                            "default the model's own)")
    duration: float | None = Field(None, gt=0, le=MAX_DURATION, description="length of the "
                                   "final clip in seconds, whatever --loop (frames = duration "
                                   "x fps)")
    window_frames: int | None = Field(None, ge=2, le=MAX_FRAMES, description="diffusion: "
                                      "frames per window of a longer clip (default: the "
                                      "model's native count), chained with matched seams")
    num_inference_steps: int | None = Field(None, ge=1, le=200, description="denoising steps")
    guidance_scale: float | None = Field(None, ge=0, le=20, description="prompt guidance "
                                         "(default the model's own)")
    guidance_scale_2: float | None = Field(None, ge=0, le=20, description="guidance of the "
                                           "low-noise expert on two-expert models (Wan 2.2 "
                                           "I2V A14B; default the model's own)")
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="random seed (diffusion)")
    lora: tuple[str, ...] = Field((), max_length=8, description="LoRA file, folder or hub id "
                                  "(org/name[/file.safetensors]), optionally :SCALE (default "
                                  "1); repeatable")
    lora_fuse: bool | None = Field(None, description="fuse the LoRAs into the weights for the "
                                   "job (faster steps; unfused after it); default from config")
    motion: Motion = Field(Motion.KEN_BURNS, description="camera move (parallax engine: "
                           "dolly-in/out, truck-left/right, pedestal-up/down, orbit, circle, "
                           "vertigo; zoom and pan moves map to dolly and truck/pedestal)")
    zoom: float = Field(1.3, ge=1.0, le=4.0, description="zoom amount (1.0 = none)")
    focus: tuple[float, float] | Literal["auto"] = Field(
        "auto", description="point the move aims at, as x,y fractions (0.6,0.4), or auto "
        "(largest face, else the centre)")
    easing: Easing = Field(Easing.EASE_IN_OUT, description="speed curve of the move")
    depth: str | None = Field(None, description="parallax: depth map image for the photo "
                              "(brighter = nearer), instead of a depth model")
    depth_invert: bool = Field(False, description="parallax: the depth map is darker = nearer")
    depth_model: str | None = Field(None, max_length=500, description="parallax: depth model "
                                    "name, hub id or local folder (default "
                                    "depth-anything-v2-small)")
    depth_of_field: float = Field(0.0, ge=0, le=1, description="parallax: blur away from the "
                                  "focus depth, 0 (off) to 1 (strong)")
    fade_in: float = Field(0.0, ge=0, le=30, description="fade from black, seconds")
    fade_out: float = Field(0.0, ge=0, le=30, description="fade to black, seconds")
    transition: float = Field(1.0, ge=0, le=10, description="crossfade between images, seconds")
    transition_style: TransitionStyle = Field(TransitionStyle.CROSSFADE,
                                              description="crossfade or morph between images")
    interpolate: int | None = Field(None, ge=2, le=4, description="multiply the frame rate by "
                                    "2, 3 or 4 with frame interpolation")
    target_fps: int | None = Field(None, ge=1, le=240, description="interpolate up to this "
                                   "frame rate")
    interpolator: InterpolatorKind = Field(InterpolatorKind.FLOW, description="flow (weightless) or "
                                       "rife (learned weights)")
    rife_weights: str | None = Field(None, description="path to a RIFE flownet.pkl "
                                     "(default: the downloaded one)")
    loop: LoopMode = Field(LoopMode.NONE, description="none, pingpong (renders half the "
                           "duration, then plays it back) or seamless (renders --transition "
                           "more, blended into the start); the clip lasts --duration either way")
    reverse: bool = Field(False, description="play the clip backwards")
    format: OutputFormat | None = Field(None, description="mp4, webm, gif, png (frame folder), "
                                        "mkv (lossless FFV1); default from config")
    crf: int | None = Field(None, ge=0, le=51, description="encoder quality (lower is better)")
    encode_speed: str | None = Field(None, description="x264-style speed preset: "
                                     + ", ".join(ENCODE_SPEEDS))
    codec: VideoCodec | None = Field(None, description="MP4 video codec: h264 (default), "
                                     "hevc or av1")
    encoder: EncoderKind | None = Field(None, description="cpu or gpu (NVENC when an NVIDIA "
                                        "GPU is present); default from config")
    audio: str | None = Field(None, max_length=4096, description="soundtrack file muxed into "
                              "the video (mp4: AAC, webm: Opus, mkv: FLAC/PCM)")
    audio_offset: float = Field(0.0, ge=0, le=36000, description="seconds into the track "
                                "where the soundtrack starts")
    fit_to_audio: bool = Field(False, description="make the slideshow last as long as the "
                               "track (each photo an equal share)")
    upscale: int | None = Field(None, description="upscale the frames 2x or 4x after "
                                "generation")
    upscaler: Upscaler = Field(Upscaler.MODEL, description="model (a super-resolution "
                               "checkpoint) or lanczos (weightless)")
    upscale_model: str | None = Field(None, max_length=4096, description="super-resolution "
                                      "checkpoint: a local file or hub id (repo/file.pth)")
    style: str | None = Field(None, max_length=4096, description="painting whose style is "
                              "given to the photo before it is animated (AdaIN)")
    style_strength: float = Field(1.0, ge=0, le=1, description="0 keeps the photo, 1 is the "
                                  "full style")
    style_weights: str | None = Field(None, max_length=4096, description="folder with AdaIN "
                                      "vgg_normalised.pth and decoder.pth (default: the "
                                      "downloaded ones)")
    memory: MemoryLevel = Field(MemoryLevel.AUTO, description="diffusion memory level: auto, "
                                "high, balanced, low, minimum")
    motion_bucket_id: int | None = Field(None, ge=0, le=255, description="SVD motion strength "
                                         "(default 127)")
    noise_aug_strength: float | None = Field(None, ge=0, le=1, description="SVD noise added to "
                                             "the photo (default 0.02)")
    compile: bool = Field(False, description="torch.compile the denoiser (slow first run)")
    attention: str | None = Field(None, max_length=40, pattern=r"^[a-z0-9_]+$",
                                  description="attention backend for transformer models "
                                  "(e.g. flash, sage, _native_cudnn)")
    step_cache: StepCache = Field(StepCache.NONE, description="skip work between steps: none, "
                                  "first-block, magcache")
    quantize: Quantize = Field(Quantize.NONE, description="denoiser weights: none, int8, fp8")

    @field_validator("focus", mode="before")
    @classmethod
    def _parse_focus(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() != "auto":
            parts = value.replace(" ", "").split(",")
            if len(parts) != 2:
                raise ValueError("expected x,y fractions such as 0.6,0.4, or auto")
            try:
                return (float(parts[0]), float(parts[1]))
            except ValueError:
                raise ValueError("expected x,y fractions such as 0.6,0.4, or auto") from None
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("focus")
    @classmethod
    def _check_focus(cls, value: Any) -> Any:
        if isinstance(value, tuple) and not all(0.0 <= v <= 1.0 for v in value):
            raise ValueError("x and y must each be between 0 and 1")
        return value

    @field_validator("prompt", mode="before")
    @classmethod
    def _window_prompts(cls, value: Any) -> Any:
        """A list is one prompt per window, as the CLI's "a | b | c"."""
        if not isinstance(value, (list, tuple)):
            return value
        if not value or not all(isinstance(p, str) and p.strip() and "|" not in p
                                for p in value):
            raise ValueError("a list of prompts needs one non-empty text per window, without "
                             "'|' (it separates them)")
        return " | ".join(p.strip() for p in value)

    @field_validator("lora", mode="before")
    @classmethod
    def _check_loras(cls, value: Any) -> Any:
        return check_loras(value)

    @field_validator("resolution")
    @classmethod
    def _check_resolution(cls, value: int | None) -> int | None:
        if value is not None and value not in RESOLUTIONS:
            raise ValueError("must be one of " + ", ".join(map(str, RESOLUTIONS)))
        return value

    @field_validator("upscale")
    @classmethod
    def _check_upscale(cls, value: int | None) -> int | None:
        if value is not None and value not in (2, 4):
            raise ValueError("must be 2 or 4")
        return value

    @field_validator("encode_speed")
    @classmethod
    def _check_speed(cls, value: str | None) -> str | None:
        if value is not None and value not in ENCODE_SPEEDS:
            raise ValueError("must be one of " + ", ".join(ENCODE_SPEEDS))
        return value

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any) -> Any:
        """Pick the engine, then fill unset values from the preset."""
        if not isinstance(data, dict):
            return data
        data = {k: v for k, v in data.items() if v is not None}
        if isinstance(data.get("images"), (str, bytes)):
            data["images"] = (data["images"],)
        engine = data.get("engine") or default_engine(data)
        try:
            engine = EngineKind(engine)
            preset = PresetName(data.get("preset", PresetName.STANDARD))
        except ValueError:
            return data  # the field validators report the bad value
        data["engine"] = engine
        explicit_size = "width" in data or "height" in data
        for key, value in PRESETS[engine][preset].items():
            if key == "resolution" and explicit_size:
                continue
            if key == "duration" and "num_frames" in data:
                continue
            if key == "num_frames" and "duration" in data:
                continue
            if key == "duration" and isinstance(data.get("images"), (list, tuple)):
                value = value * max(1, len(data["images"]))  # a preset's length is per photo
            data.setdefault(key, value)
        return data

    @model_validator(mode="after")
    def _check_timing(self) -> GenerationRequest:
        if self.num_frames is not None and self.duration is not None and self.fps:
            if abs(self.num_frames - self.duration * self.fps) >= 1:
                raise ValueError(
                    f"num_frames={self.num_frames} disagrees with duration={self.duration:g} s "
                    f"at fps={self.fps}: give one of them")
        if self.num_frames is None and self.duration is not None and self.fps:
            object.__setattr__(self, "num_frames", max(1, round(self.duration * self.fps)))
        if self.num_frames is not None and self.num_frames > MAX_FRAMES:
            raise ValueError(f"duration x fps gives {self.num_frames} frames; "
                             f"the limit is {MAX_FRAMES}")
        if self.num_frames is not None and self.duration is None and self.fps:
            object.__setattr__(self, "duration", self.num_frames / self.fps)
        if self.duration and self.fade_in + self.fade_out > self.duration + 1e-9:
            raise ValueError(f"fade_in + fade_out ({self.fade_in + self.fade_out:g} s) is longer "
                             f"than the clip ({self.duration:g} s)")
        return self

    @model_validator(mode="after")
    def _check_engine_options(self) -> GenerationRequest:
        parallax = self.engine is EngineKind.PARALLAX
        if not parallax and self.motion in PARALLAX_ONLY_MOTIONS:
            raise ValueError(f"motion {self.motion.value} needs depth: use --engine parallax")
        if parallax and self.motion is Motion.ROTATE:
            raise ValueError("the parallax engine has no rotate move; try orbit or circle")
        if not parallax and (self.depth or self.depth_model or self.depth_invert
                             or self.depth_of_field):
            raise ValueError("depth, depth_model, depth_invert and depth_of_field are parallax "
                             f"options; the {self.engine.value if self.engine else 'camera'} "
                             "engine does not use them")
        if parallax and len(self.images) > 1 and self.depth:
            raise ValueError("one depth map cannot serve several photos: leave depth unset to "
                             "use the depth model, or make one video per photo")
        return self

    @model_validator(mode="after")
    def _check_interpolation(self) -> GenerationRequest:
        if self.interpolate is not None and self.target_fps is not None:
            raise ValueError("give interpolate or target_fps, not both")
        if self.target_fps is not None and self.fps and self.target_fps < self.fps:
            raise ValueError(f"target_fps={self.target_fps} is below fps={self.fps}; "
                             "interpolation only adds frames")
        return self

    @model_validator(mode="after")
    def _check_diffusion_only(self) -> GenerationRequest:
        used = [name for name in ("last_image", "lora", "guidance_scale_2")
                if getattr(self, name)]
        if self.engine is EngineKind.CAMERA and used:
            raise ValueError(f"{' and '.join(used)} need a diffusion model (give --model)")
        return self

    @model_validator(mode="after")
    def _check_finishing(self) -> GenerationRequest:
        if self.format in (OutputFormat.GIF, OutputFormat.PNG) and self.audio:
            raise ValueError(f"{self.format.value} output has no sound track; use mp4, webm "
                             "or mkv with audio")
        if (self.fit_to_audio or self.audio_offset) and not self.audio:
            raise ValueError("fit_to_audio and audio_offset need audio (a sound file)")
        if self.fit_to_audio and self.loop is LoopMode.PINGPONG:
            raise ValueError("fit_to_audio cannot be used with loop pingpong (it doubles the "
                             "length); use loop none or seamless")
        if self.fit_to_audio and self.engine is EngineKind.DIFFUSION:
            raise ValueError("fit_to_audio works with the camera engine: a diffusion model "
                             "makes a fixed number of frames")
        if self.codec not in (None, VideoCodec.H264) and self.format not in (None,
                                                                            OutputFormat.MP4):
            raise ValueError(f"codec={self.codec.value} is for mp4 output; "
                             f"{self.format.value} has its own codec")
        return self

    def summary(self) -> dict[str, Any]:
        """JSON-ready dict of every field (the sidecar's `request`)."""
        return self.model_dump(mode="json")


def default_engine(data: dict[str, Any]) -> EngineKind:
    """diffusion with a model, parallax with depth options or a depth-only motion, else camera."""
    if data.get("model"):
        return EngineKind.DIFFUSION
    motion = data.get("motion")
    try:
        depth_motion = motion is not None and Motion(motion) in PARALLAX_ONLY_MOTIONS
    except ValueError:
        depth_motion = False
    if data.get("depth") or data.get("depth_model") or depth_motion:
        return EngineKind.PARALLAX
    return EngineKind.CAMERA


def build_request(**fields: Any) -> GenerationRequest:
    """Build a request, turning validation failures into one InputError line.

    The message names the field, the value given and what is allowed.
    """
    try:
        return GenerationRequest(**fields)
    except ValidationError as exc:
        raise InputError(one_line(exc, GenerationRequest, subject="invalid request")) from None


def field_range(field: str) -> str | None:
    """A request field's allowed range as --help and the messages say it, e.g. '1 to 120'."""
    return allowed_range(GenerationRequest.model_fields.get(field))
