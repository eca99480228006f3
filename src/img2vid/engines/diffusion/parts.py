"""Models assembled from several hub repos: a component from a repo of its own.

FramePack is three repos: its transformer is a bare diffusers model repo
(lllyasviel/FramePackI2V_HY, weights at the root), the text encoders, tokenizers, VAE and
scheduler come from hunyuanvideo-community/HunyuanVideo, and the SigLIP image encoder and its
processor from subfolders of lllyasviel/flux_redux_bfl. A registered model names such parts as
`component: "org/name"` (the repo root) or `"org/name/subfolder"`; its family says which class
each loads with (Family.part_classes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# what a diffusers/transformers component folder needs: configs, tokenizer files, weights
_FILES = ("*.json", "*.txt", "*.model", "*.jinja", "*.safetensors")


@dataclass(frozen=True)
class PartSource:
    """Where one component comes from: a hub repo and a folder in it (None: the root)."""

    hub_id: str
    subfolder: str | None

    @classmethod
    def parse(cls, text: str) -> PartSource:
        org, name, *rest = text.strip("/").split("/")
        return cls(f"{org}/{name}", "/".join(rest) or None)

    def __str__(self) -> str:
        return f"{self.hub_id}/{self.subfolder}" if self.subfolder else self.hub_id

    def allow_patterns(self) -> list[str]:
        prefix = f"{self.subfolder}/" if self.subfolder else ""
        return [prefix + pattern for pattern in _FILES]


@dataclass(frozen=True)
class Part:
    """A component's files on disk, and the commit they came from."""

    name: str
    source: PartSource
    path: Path  # the component's folder (the snapshot, or a subfolder of it)
    revision: str | None

    def describe(self) -> dict[str, Any]:
        return {"id": str(self.source), "revision": self.revision}


def base_patterns(components: tuple[str, ...]) -> list[str]:
    """Files to fetch from the main repo when some components come from elsewhere: only
    the other components' folders (FramePack skips HunyuanVideo's own 25 GB transformer)."""
    return ["model_index.json"] + [f"{c}/{p}" for c in components for p in _FILES]


def load_parts(parts: tuple[Part, ...], classes: dict[str, tuple[str, str]],
               dtypes: dict[str, Any]) -> dict[str, Any]:
    """Each part loaded with its family's class, in its own dtype (processors have none)."""
    import importlib

    loaded = {}
    for part in parts:
        library, class_name = classes[part.name]
        cls = getattr(importlib.import_module(library), class_name)
        options: dict[str, Any] = {"local_files_only": True}
        if hasattr(cls, "parameters"):  # a model, not a processor
            options["dtype"] = dtypes.get(part.name, dtypes["default"])
        loaded[part.name] = cls.from_pretrained(part.path, **options)
    return loaded
