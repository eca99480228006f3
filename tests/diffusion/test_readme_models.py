"""The README's per-model table is the registry's (regenerate: python -m tests.diffusion.test_readme_models)."""

from __future__ import annotations

from img2vid.engines.diffusion.registry import MODELS, TIERS
from tests.conftest import ROOT


def model_table() -> str:
    rows = ["| model | hub id | pipeline | native size | frames | fps | steps | guidance | "
            "preview / high / max | download |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for spec in MODELS.values():
        d = spec.defaults
        fixed = spec.shape_rules.fixed_size
        size = (f"{fixed[0]}x{fixed[1]} only" if fixed else
                f"{spec.tier('standard').short_side}p" if spec.tier("standard").short_side else
                f"{d.width}x{d.height} area")
        tiers = []
        for name in TIERS:
            if name == "standard":
                continue
            tier = spec.tier(name)
            side = f"{tier.short_side}p " if tier.short_side else ""
            tiers.append(f"{side}{tier.num_frames}f {tier.num_inference_steps}s")
        rows.append(f"| `{spec.name}` | {spec.hub_id} | {spec.pipeline_class} | {size} | "
                    f"{spec.tier('standard').num_frames} ({spec.shape_rules.frames.describe()}) "
                    f"| {d.fps} | {spec.tier('standard').num_inference_steps} | "
                    f"{d.guidance_scale:g} | {' / '.join(tiers)} | ~{spec.download_gb:g} GB |")
    return "\n".join(rows)


def test_readme_model_table_matches_the_registry():
    assert model_table() in (ROOT / "README.md").read_text(encoding="utf-8")


if __name__ == "__main__":
    print(model_table())
