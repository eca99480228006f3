"""Which registry models this machine has: cache state and size on disk (for `models` and the server)."""

from __future__ import annotations

from typing import Any

from img2vid.core.config import Settings


def model_rows(settings: Settings, *, sizes: bool = True) -> list[dict[str, Any]]:
    """One row per registry model with its download size and cache state (and its size on
    disk with `sizes`, which walks the whole Hugging Face cache)."""
    from huggingface_hub import try_to_load_from_cache

    from img2vid.engines.diffusion.loading import RevisionLock, cached_model
    from img2vid.engines.diffusion.parts import PartSource
    from img2vid.engines.diffusion.registry import MODELS
    from img2vid.engines.parallax.depth import DEPTH_MODELS

    cache_dir = str(settings.models.cache_dir) if settings.models.cache_dir else None
    on_disk = _cached_sizes(cache_dir) if sizes else {}
    rows = []
    locked = RevisionLock(settings).read()
    for spec in MODELS.values():
        local = settings.models.local_dirs.get(spec.name)
        index = try_to_load_from_cache(spec.hub_id, "model_index.json", cache_dir=cache_dir)
        cached = isinstance(index, str) and (  # a model of several repos needs them all
            not spec.components or cached_model(spec.name, settings) is not None)
        repos = {spec.hub_id} | {PartSource.parse(c).hub_id for c in spec.components.values()}
        rows.append({
            "name": spec.name,
            "hub_id": spec.hub_id,
            "pipeline": spec.pipeline_class,
            "family": spec.family.name,
            # the commit runs load: the one recorded at download, else the registry's pin
            "revision": locked.get(spec.hub_id, spec.revision),
            "defaults": spec.describe_defaults(),
            "download_gb": spec.download_gb,
            "cached": cached or local is not None,
            "size_on_disk_bytes": (sum(on_disk[r] for r in repos if r in on_disk)
                                   if spec.hub_id in on_disk else None),
            "local_dir": str(local) if local else None,
            "description": spec.description,
        })
    for depth in DEPTH_MODELS.values():  # the parallax engine's: a transformers repo
        local = settings.models.local_dirs.get(depth.name)
        config = try_to_load_from_cache(depth.hub_id, "config.json", cache_dir=cache_dir)
        rows.append({
            "name": depth.name,
            "hub_id": depth.hub_id,
            "pipeline": "AutoModelForDepthEstimation",
            "download_gb": depth.download_gb,
            "cached": isinstance(config, str) or local is not None,
            "size_on_disk_bytes": on_disk.get(depth.hub_id),
            "local_dir": str(local) if local else None,
            "description": depth.description,
        })
    return rows


def _cached_sizes(cache_dir: str | None) -> dict[str, int]:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return {}
    return {repo.repo_id: repo.size_on_disk for repo in info.repos if repo.repo_type == "model"}
