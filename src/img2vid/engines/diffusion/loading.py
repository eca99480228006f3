"""Find a model's weights (local folder, configured folder, Hugging Face cache or hub) and load them."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from img2vid.core.config import Settings
from img2vid.core.errors import InputError, ModelLoadError, ModelNotAvailableError
from img2vid.engines.diffusion.census import Census, weight_census
from img2vid.engines.diffusion.parts import Part, PartSource, base_patterns, load_parts
from img2vid.engines.diffusion.registry import (
    FAMILIES,
    MODELS,
    Defaults,
    ModelSpec,
    family_of,
    get_spec,
)

log = logging.getLogger(__name__)

__all__ = ["Census", "weight_census"]  # re-exported: the planner and tests read them here


@dataclass(frozen=True)
class ResolvedModel:
    """A model whose files are on disk, with what the sidecar records about where they came from."""

    spec: ModelSpec
    path: Path
    source: str  # "folder" or "hub"
    revision: str | None  # hub commit when known
    variant: str | None  # weight-file variant present in the folder (fp16), if any
    parts: tuple[Part, ...] = ()  # components from repos of their own (parts.py)

    @property
    def model_id(self) -> str:
        return self.spec.hub_id if self.source == "hub" else str(self.path)

    def component_dir(self, component: str) -> Path:
        part = next((p for p in self.parts if p.name == component), None)
        return part.path if part else self.path / component

    def config(self, component: str) -> dict[str, Any]:
        return read_dir_config(self.component_dir(component))

    def describe(self) -> dict[str, Any]:
        described = {"name": self.spec.name, "id": self.model_id, "source": self.source,
                     "path": str(self.path), "revision": self.revision,
                     "variant": self.variant, "family": self.spec.family.name,
                     "pipeline": self.spec.pipeline_class}
        if self.parts:
            described["components"] = {p.name: p.describe() for p in self.parts}
        return described


def allow_patterns(spec: ModelSpec) -> list[str]:
    """Files a diffusers image-to-video load needs: configs, tokenizers, one set of weights.

    Hub repos also carry original checkpoints at their root and several weight variants;
    fetching only these keeps a download to the size `img2vid models` shows.
    """
    if spec.components:
        return base_patterns(spec.family.base_components)
    weights = f"*/*.{spec.variant}*.safetensors" if spec.variant else "*/*.safetensors"
    # chat_template.jinja: the Qwen2 tokenizer of HunyuanVideo-1.5 keeps its template there
    return ["model_index.json", "*/*.json", "*/*.txt", "*/*.model", "*/*.jinja", weights]


class HubClient(Protocol):
    """The one hub call img2vid makes: a snapshot of a repo at a revision, into the cache."""

    def snapshot(self, repo_id: str, *, revision: str | None, allow_patterns: list[str],
                 cache_dir: str | None, local_only: bool) -> str: ...


class HuggingFaceHub:
    def snapshot(self, repo_id: str, *, revision: str | None, allow_patterns: list[str],
                 cache_dir: str | None, local_only: bool) -> str:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo_id, revision=revision, allow_patterns=allow_patterns,
                                 cache_dir=cache_dir, local_files_only=local_only)


HUB: HubClient = HuggingFaceHub()  # tests put a fake here


def resolve_model(name: str | None, settings: Settings,
                  revision: str | None = None) -> ResolvedModel:
    """Turn --model (a registry name, a configured name or a folder) into files on disk.

    A registered model loads the commit in the revision lock (the first one downloaded), else
    its registry pin, else the hub's newest; `revision` overrides all three. Downloads through
    huggingface_hub when the model is missing and the hub is reachable.
    """
    name = (name or settings.models.default).strip()
    configured = settings.models.local_dirs.get(name)
    if configured is not None:
        return resolve_folder(Path(configured).expanduser(), name=name)
    candidate = Path(name).expanduser()
    if candidate.exists():
        return resolve_folder(candidate)
    if _looks_like_path(name):
        raise InputError(f"model folder not found: {name}")
    spec = registered(name)
    locks = RevisionLock(settings)
    wanted = revision or locks.get(spec.hub_id) or spec.revision
    try:  # a cached model is used as it is: no request to the hub for every job
        path = _snapshot(spec, settings, wanted, local_only=True)
    except ModelNotAvailableError:
        path = _snapshot(spec, settings, wanted, local_only=None)  # downloads unless offline
    parts = _parts(spec, settings, locks, local_only=None)
    resolved = _from_snapshot(spec, path, parts)
    if revision is None:
        for hub_id, commit in [(spec.hub_id, resolved.revision),
                               *((p.source.hub_id, p.revision) for p in parts)]:
            locks.keep(hub_id, commit)
    return resolved


def _parts(spec: ModelSpec, settings: Settings, locks: RevisionLock, local_only: bool | None,
           update: bool = False) -> tuple[Part, ...]:
    """The components a model takes from other repos, each at its locked commit."""
    parts = []
    for name, text in spec.components.items():
        source = PartSource.parse(text)
        wanted = None if update else locks.get(source.hub_id)
        try:
            root = _snapshot(spec, settings, wanted, local_only=True, source=source)
        except ModelNotAvailableError:
            if local_only:
                raise
            root = _snapshot(spec, settings, wanted, local_only=local_only, source=source)
        commit = root.name if root.parent.name == "snapshots" else None
        parts.append(Part(name, source, root / (source.subfolder or ""), commit))
    return tuple(parts)


def registered(name: str) -> ModelSpec:
    spec = get_spec(name)
    if spec is None:
        raise InputError(f"unknown model {name!r}; known: {', '.join(MODELS)} "
                         "(or a folder with model_index.json)")
    return spec


def cached_model(name: str, settings: Settings, revision: str | None = None
                 ) -> ResolvedModel | None:
    """The registered model's files if they are in the cache (never downloads)."""
    spec = registered(name)
    wanted = revision or RevisionLock(settings).get(spec.hub_id) or spec.revision
    try:
        path = _snapshot(spec, settings, wanted, local_only=True)
        return _from_snapshot(spec, path, _parts(spec, settings, RevisionLock(settings), True))
    except ModelNotAvailableError:
        return None


def _looks_like_path(name: str) -> bool:
    return "/" in name or "\\" in name or name.startswith((".", "~"))


def download_model(name: str, settings: Settings, update: bool = False) -> ResolvedModel:
    """Fetch a registry model into the Hugging Face cache (huggingface_hub's progress bars).

    `update`: move to the hub's newest commit and record it in the revision lock."""
    spec = registered(name)
    locks = RevisionLock(settings)
    wanted = None if update else (locks.get(spec.hub_id) or spec.revision)
    path = _snapshot(spec, settings, wanted, local_only=False)
    resolved = _from_snapshot(spec, path, _parts(spec, settings, locks, False, update))
    for hub_id, commit in [(spec.hub_id, resolved.revision),
                           *((p.source.hub_id, p.revision) for p in resolved.parts)]:
        locks.keep(hub_id, commit, replace=update)
    return resolved


class RevisionLock:
    """img2vid-revisions.json beside the model cache: hub id -> the commit to load, so a repo
    update does not silently change a user's weights between runs."""

    FILE = "img2vid-revisions.json"

    def __init__(self, settings: Settings) -> None:
        from huggingface_hub import constants

        root = settings.models.cache_dir or constants.HF_HUB_CACHE
        self.path = Path(root).expanduser() / self.FILE

    def read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) \
            else {}

    def get(self, hub_id: str) -> str | None:
        return self.read().get(hub_id)

    def keep(self, hub_id: str, commit: str | None, replace: bool = False) -> None:
        data = self.read()
        if commit is None or data.get(hub_id) == commit or (hub_id in data and not replace):
            return
        data[hub_id] = commit
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            tmp.replace(self.path)
        except OSError as exc:  # a read-only cache still runs, unpinned
            log.warning("could not record %s@%s in %s: %s", hub_id, commit, self.path, exc)


def _snapshot(spec: ModelSpec, settings: Settings, revision: str | None,
              local_only: bool | None, source: PartSource | None = None) -> Path:
    """The main repo's snapshot, or with `source` a component repo's."""
    from huggingface_hub import is_offline_mode
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RevisionNotFoundError,
    )

    offline = is_offline_mode() if local_only is None else local_only
    cache_dir = settings.models.cache_dir
    at = f"@{revision[:12]}" if revision else ""
    repo = source.hub_id if source else spec.hub_id
    patterns = source.allow_patterns() if source else allow_patterns(spec)
    try:
        folder = HUB.snapshot(repo, revision=revision, allow_patterns=patterns,
                              cache_dir=str(cache_dir) if cache_dir else None,
                              local_only=offline)
    except GatedRepoError:
        raise ModelNotAvailableError(
            f"{spec.name} ({repo}) is gated on the Hugging Face hub: accept its licence "
            f"on its hub page, log in with `hf auth login`, then retry") from None
    except RevisionNotFoundError:
        raise ModelNotAvailableError(
            f"{repo} has no revision {revision!r}: give a commit, branch or tag of the "
            "repo (or drop --revision)") from None
    except LocalEntryNotFoundError as exc:
        why = ("the Hugging Face hub is offline (HF_HUB_OFFLINE)" if offline or _is_offline_error(exc)
               else "the Hugging Face hub could not be reached")
        if local_only is False:  # an explicit download
            raise ModelNotAvailableError(
                f"cannot download {spec.name} ({repo}{at}): {why}; retry with internet "
                "(and HF_HUB_OFFLINE unset), or use a local copy with --model /path/to/folder"
            ) from None
        raise ModelNotAvailableError(
            f"model {spec.name} ({repo}{at}) is not downloaded and {why}: run "
            f"`img2vid models download {spec.name}` with internet, or pass --model /path/to/folder"
        ) from None
    except (HfHubHTTPError, OSError) as exc:
        raise ModelNotAvailableError(
            f"could not download {spec.name} ({repo}): {_first_line(exc)}; retry with "
            f"internet, or pass --model /path/to/folder") from None
    return Path(folder)


def _is_offline_error(exc: BaseException) -> bool:
    return "outgoing traffic has been disabled" in str(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


def _from_snapshot(spec: ModelSpec, folder: Path, parts: tuple[Part, ...] = ()
                   ) -> ResolvedModel:
    """A downloaded registered model: its shape rules come from its own configs (the same as
    the registry's for the real repos; a fine-tune or a test replica may differ)."""
    revision = folder.name if folder.parent.name == "snapshots" else None
    resolved = ResolvedModel(spec=spec, path=folder, source="hub", revision=revision,
                             variant=_variant_present(folder, spec.variant), parts=parts)
    rules = spec.family.shape_rules(resolved.config)
    return dataclasses.replace(resolved, spec=dataclasses.replace(spec, rules=rules))


def resolve_folder(folder: Path, name: str | None = None) -> ResolvedModel:
    """A local diffusers folder: its family comes from model_index.json, its shape rules from
    its configs, its defaults from the family's registered model of that size if any."""
    if not folder.is_dir():
        raise InputError(f"model folder not found: {folder}")
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise InputError(f"{folder} has no model_index.json: give a diffusers model folder "
                         f"(one saved with save_pretrained) or a model name ({', '.join(MODELS)})")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        class_name = index["_class_name"]
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"{index_path} is not a valid diffusers model index") from None
    family = family_of(index)
    if family is None and any(class_name in f.text_to_video for f in FAMILIES.values()):
        raise InputError(f"{folder} holds a text-to-video {class_name}; img2vid needs an "
                         "image-to-video model (e.g. " + ", ".join(MODELS) + ")")
    if family is None:
        known = sorted(c for f in FAMILIES.values() for c in f.index_classes)
        raise InputError(f"{folder} holds a {class_name}, which img2vid cannot run (it is not "
                         f"an image-to-video model of a known family); supported: "
                         + ", ".join(known))
    rules = family.shape_rules(lambda component: read_config(folder, component))
    # defaults of the family's registered model with the same shape rules (Wan 2.1 or 2.2)
    relatives = [s for s in MODELS.values() if s.family is family]
    reference = next((s for s in relatives if s.shape_rules.side_multiple == rules.side_multiple),
                     relatives[0])
    defaults = reference.defaults
    if rules.fixed_size is not None:
        defaults = Defaults(*rules.fixed_size, rules.frames.fixed or defaults.num_frames,
                            defaults.fps, defaults.num_inference_steps, defaults.guidance_scale)
    if index.get("boundary_ratio") is not None and defaults.guidance_scale_2 is None:
        # a second (low-noise) expert: the pipeline gives it the first one's guidance
        defaults = dataclasses.replace(defaults, guidance_scale_2=defaults.guidance_scale)
    spec = ModelSpec(name=name or folder.name, family=family, hub_id=str(folder),
                     defaults=defaults, download_gb=0.0, rules=rules, tiers=reference.tiers,
                     description=f"local {class_name} folder",
                     last_image=family.last_image_mode(
                         index, lambda component: read_config(folder, component)))
    revision = folder.name if folder.parent.name == "snapshots" else None
    return ResolvedModel(spec=spec, path=folder, source="folder", revision=revision,
                         variant=_variant_present(folder, "fp16"))


def read_config(folder: Path, component: str) -> dict[str, Any]:
    """A component's config.json, or {} when absent (tokenizers, schedulers...)."""
    return read_dir_config(folder / component)


def read_dir_config(folder: Path) -> dict[str, Any]:
    for name in ("config.json", "scheduler_config.json", "preprocessor_config.json"):
        path = folder / name
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return {}
            return data if isinstance(data, dict) else {}
    return {}


def _variant_present(folder: Path, variant: str | None) -> str | None:
    if variant and any(folder.glob(f"*/*.{variant}*.safetensors")):
        return variant
    return None


def load_pipeline(resolved: ResolvedModel, dtypes: dict[str, Any]) -> Any:
    """Load the image-to-video pipeline from the resolved folder (never touches the network),
    each component in its own dtype ("default" for the rest)."""
    import diffusers

    cls = getattr(diffusers, resolved.spec.pipeline_class)
    try:
        parts = load_parts(resolved.parts, resolved.spec.family.part_classes, dtypes)
        pipe = cls.from_pretrained(resolved.path, dtype=dtypes, variant=resolved.variant,
                                   local_files_only=True, **parts)
    except (OSError, ValueError, KeyError, ImportError) as exc:
        raise ModelLoadError(f"cannot load {resolved.spec.name} from {resolved.path}: "
                             f"{load_failure(exc)}") from None
    pipe.set_progress_bar_config(disable=True)  # progress goes through our callback instead
    resolved.spec.family.prepare(pipe)
    return pipe


def load_failure(exc: BaseException) -> str:
    """The real cause of a failed load. A tokenizer folder with only spiece.model (LTX-Video,
    CogVideoX) needs sentencepiece to convert; without it transformers names tiktoken."""
    text = _first_line(exc)
    try:
        import sentencepiece  # noqa: F401
    except ImportError:
        missing = True
    else:
        missing = False
    if missing and ("tiktoken" in text or "sentencepiece" in text.lower()
                    or "tokenizer" in text.lower()):
        return ("its tokenizer is a SentencePiece model (spiece.model) and the sentencepiece "
                "package is missing: pip install 'img2vid[diffusion]' (or pip install "
                "sentencepiece)")
    return text
