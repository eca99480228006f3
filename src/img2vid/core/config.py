"""Settings: config.yaml plus IMG2VID_* environment overrides, every key with a default."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from img2vid.core.errors import InputError
from img2vid.core.request import EncoderKind, OutputFormat
from img2vid.core.validation import one_line

CONFIG_ENV = "IMG2VID_CONFIG"
DEFAULT_CONFIG_NAME = "config.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OutputSettings(_Section):
    directory: Path = Field(Path("outputs"), description="where videos and sidecars go")
    format: OutputFormat = Field(OutputFormat.MP4, description="default output format")
    prefix: str = Field("video_", description="file name prefix before the timestamp")
    gif_max_side: int = Field(480, ge=0, le=4096, description="GIFs are scaled down to this "
                              "long side (they grow huge fast); 0 keeps the video's size")
    encoder: EncoderKind = Field(EncoderKind.CPU, description="cpu, or gpu for NVENC when an "
                                 "NVIDIA GPU is present (falls back to the CPU with a note)")

    @field_validator("prefix")
    @classmethod
    def _safe_prefix(cls, value: str) -> str:
        if "/" in value or "\\" in value or value.startswith("."):
            raise ValueError("must be a plain file-name prefix (no slashes, no leading dot)")
        return value


class ImageSettings(_Section):
    max_pixels: int = Field(120_000_000, ge=1, description="refuse images with more pixels "
                            "(decompression-bomb guard; checked before decoding)")
    max_total_pixels: int = Field(600_000_000, ge=1, description="refuse jobs whose photos "
                                  "add up to more pixels (decoded that is 3 bytes each: the "
                                  "default stays under 2 GB; checked before decoding)")
    min_side: int = Field(64, ge=1, description="refuse images smaller than this on a side")
    background: str = Field("#ffffff", pattern=r"^#[0-9a-fA-F]{6}$",
                            description="colour transparent pixels are composited onto")


class LogSettings(_Section):
    directory: Path = Field(Path("logs"), description="where app_<timestamp>.log files go")
    level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(7860, ge=1, le=65535)
    token: str | None = Field(None, description="bearer token required by the API and UI")
    workers: int = Field(1, ge=1, le=64, description="camera-engine jobs run at once")
    max_upload_mb: float = Field(20, gt=0)
    queue_limit: int = Field(100, ge=1, description="queued jobs before 429")
    cors_origins: list[str] = Field(default_factory=list, description="other web origins "
                                    "(scheme://host:port) whose pages may call the API")
    allowed_hosts: list[str] = Field(default_factory=list, description="names clients reach "
                                     "this server by, besides loopback and IP addresses "
                                     "(DNS-rebinding guard); '*' turns the check off")
    shutdown_grace_s: float = Field(5.0, ge=0, le=3600, description="on Ctrl-C/SIGTERM, "
                                    "seconds a running job may take to finish before it is "
                                    "stopped and re-queued")


class ModelSettings(_Section):
    default: str = Field("i2vgen-xl", min_length=1, max_length=500,
                         description="diffusion model of --engine diffusion without --model: "
                         "a registered name, a local_dirs name or a folder")
    cache_dir: Path | None = Field(None, description="Hugging Face cache (default: HF_HOME)")
    lora_fuse: bool = Field(False, description="fuse LoRAs into the weights for each job "
                            "(faster steps; unfused after it) unless a request says otherwise")
    local_dirs: dict[str, Path] = Field(default_factory=dict,
                                        description="model name -> local folder")
    upscale_model: str | None = Field(None, description="super-resolution checkpoint used by "
                                      "--upscale (a .pth/.safetensors file or a hub id "
                                      "owner/repo/file.pth)")
    style_weights: Path | None = Field(None, description="folder with the AdaIN "
                                       "vgg_normalised.pth and decoder.pth for --style "
                                       "(default: the model cache)")
    devices: list[str] = Field(default_factory=list, description="devices diffusion jobs run "
                               "on, one job at a time each, e.g. [cuda:0, cuda:1] (default: "
                               "every CUDA GPU, else the best device there is)")

    @field_validator("devices")
    @classmethod
    def _known_devices(cls, value: list[str]) -> list[str]:
        devices = []
        for device in value:
            if not re.fullmatch(r"cuda(:\d+)?|mps|cpu", device):
                raise ValueError(f"{device!r} is not a device; use cuda:N, mps or cpu")
            devices.append("cuda:0" if device == "cuda" else device)
        if len(set(devices)) != len(devices):
            raise ValueError("names a device twice; one worker per device")
        return devices


class Settings(BaseSettings):
    """Everything configurable. Unknown keys are an error so typos do not pass silently."""

    model_config = SettingsConfigDict(env_prefix="IMG2VID_", env_nested_delimiter="__",
                                      extra="forbid", frozen=True)

    output: OutputSettings = OutputSettings()
    images: ImageSettings = ImageSettings()
    logs: LogSettings = LogSettings()
    server: ServerSettings = ServerSettings()
    models: ModelSettings = ModelSettings()

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the file (passed as init values); no .env or secrets dirs.
        return env_settings, init_settings


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file in effect: --config, then $IMG2VID_CONFIG, then ./config.yaml."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    local = Path(DEFAULT_CONFIG_NAME)
    return local if local.is_file() else None


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load settings from the config file in effect (if any) and the environment."""
    config_path = find_config(path)
    data: dict[str, Any] = {}
    if config_path is not None:
        try:
            text = config_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(f"config file not found: {config_path}") from None
        except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read config file {config_path}: {exc}") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            line = f" at line {where.line + 1}" if where else ""
            raise InputError(f"config file {config_path} is not valid YAML{line}") from None
        if not isinstance(data, dict):
            raise InputError(f"config file {config_path} must be a mapping of sections")
    try:
        return Settings(**data)
    except ValidationError as exc:
        where = f"config file {config_path}" if config_path else "configuration"
        raise InputError(_from_environment(exc) or one_line(
            exc, Settings, subject=f"invalid {where}", values=False)) from None
    except SettingsError as exc:  # an IMG2VID_* variable that is not the JSON its field needs
        names = sorted(name for name in os.environ if name.startswith("IMG2VID_"))
        raise InputError(f"{exc} ({', '.join(names)}): lists and mappings in IMG2VID_* "
                         """variables are JSON, e.g. IMG2VID_MODELS__DEVICES='["cuda:0"]'"""
                         ) from None


def _from_environment(exc: ValidationError) -> str | None:
    """One line naming the IMG2VID_* variables that gave bad values, if any did (so a bad
    variable is not reported as a bad config file)."""
    parts = []
    for err in exc.errors():
        variable = _env_variable([str(p) for p in err["loc"]])
        if variable is not None:
            reason = err["msg"].removeprefix("Value error, ")
            parts.append(f"{variable}={os.environ[variable]}: {reason}")
    return "invalid environment variable " + "; ".join(parts) if parts else None


def _env_variable(loc: list[str]) -> str | None:
    """The IMG2VID_SECTION__KEY variable that set the value at `loc`, if one did."""
    names = {name.upper(): name for name in os.environ if name.upper().startswith("IMG2VID_")}
    for depth in range(len(loc), 0, -1):
        wanted = "IMG2VID_" + "__".join(loc[:depth]).upper()
        if wanted in names:
            return names[wanted]
    return None


def dump_settings(settings: Settings) -> str:
    """The settings in effect, as YAML (for `img2vid doctor` and the docs); a token is shown
    as set or not, never its value (doctor's output gets pasted into bug reports)."""
    values = settings.model_dump(mode="json")
    if values.get("server", {}).get("token"):
        values["server"]["token"] = "<set>"
    return yaml.safe_dump(values, sort_keys=False)
