"""The memory planner's choices for given memory figures (no torch, no GPU needed)."""

from __future__ import annotations

import pytest

from img2vid.engines.memory import (
    GB,
    MemoryFigures,
    Workload,
    oom_advice,
    plan_memory,
    step_down,
)

# Roughly I2VGen-XL in fp16 at 512p/16 frames: 2.8 GB UNet, 2 GB encoders, 0.2 GB VAE.
WORK = Workload(weights={"unet": int(2.8 * GB), "text_encoder": int(0.7 * GB),
                         "image_encoder": int(1.3 * GB), "vae": int(0.17 * GB)},
                activations=int(3 * GB), decode_per_frame=int(0.7 * GB), num_frames=16,
                decode_tiled=int(0.5 * GB), tiling=True)


def gpu(free_gb: float, ram_gb: float = 64) -> MemoryFigures:
    return MemoryFigures("cuda", int(free_gb * GB), int(80 * GB), int(ram_gb * GB))


@pytest.mark.parametrize(("free_gb", "level", "offload"), [
    (80, "high", "none"),
    (8.5, "balanced", "model"),
    (5, "low", "group"),
    (4, "minimum", "leaf"),
])
def test_auto_picks_the_heaviest_level_that_fits(free_gb, level, offload):
    plan = plan_memory(WORK, gpu(free_gb))
    assert (plan.level, plan.offload) == (level, offload)
    assert plan.fits and plan.estimated_peak <= plan.budget
    assert level in plan.reason and f"{plan.estimated_peak / GB:.2f} GB" in plan.reason


def test_when_nothing_fits_it_tries_the_lightest_level_and_says_so():
    plan = plan_memory(WORK, gpu(1))
    assert plan.level == "minimum" and not plan.fits and plan.vae_tiling
    assert "nothing fits" in plan.reason


def test_forced_level_is_kept_even_if_lighter_would_do():
    plan = plan_memory(WORK, gpu(80), "low")
    assert (plan.level, plan.offload, plan.forced) == ("low", "group", True)
    assert "forced by --memory low" in plan.reason


def test_decode_gets_chunked_then_tiled_as_levels_get_lighter():
    chunks = [plan_memory(WORK, gpu(80), level) for level in ("high", "balanced", "low",
                                                                   "minimum")]
    assert [p.decode_chunk for p in chunks] == [4, 2, 1, 1]
    assert chunks[-1].vae_tiling and not chunks[0].vae_tiling


def test_tiling_is_switched_on_before_giving_up_on_a_level():
    huge_decode = Workload(weights={"unet": 1 * GB, "vae": GB // 10}, activations=GB,
                           decode_per_frame=6 * GB, num_frames=8, decode_tiled=GB // 2,
                           tiling=True)
    plan = plan_memory(huge_decode, gpu(5), "balanced")
    assert plan.vae_tiling and plan.fits


def test_cpu_never_offloads_but_still_plans_decoding():
    cpu = MemoryFigures("cpu", None, None, int(64 * GB))
    plan = plan_memory(WORK, cpu)
    assert plan.level == "high" and plan.offload == "none"
    assert "offloading needs a CUDA GPU" in plan.reason
    big_frames = Workload(weights=WORK.weights, activations=WORK.activations,
                          decode_per_frame=2 * GB, num_frames=16, decode_tiled=GB // 2,
                          tiling=True)
    tight = plan_memory(big_frames, MemoryFigures("cpu", None, None, int(12 * GB)))
    assert tight.offload == "none" and tight.fits
    assert tight.vae_tiling  # decoding economised to fit 12 GB of RAM


def test_step_down_goes_one_level_lighter_then_stops():
    figures = gpu(80)
    plan = plan_memory(WORK, figures, "high")
    seen = [plan.level]
    while (plan := step_down(plan, WORK, figures)) is not None:
        seen.append(plan.level)
        assert "stepped down" in plan.reason
    assert seen == ["high", "balanced", "low", "minimum"]


def test_oom_advice_names_what_to_change():
    figures = gpu(80)
    assert "--memory low" in oom_advice(plan_memory(WORK, figures, "balanced"))
    assert "--memory minimum" in oom_advice(plan_memory(WORK, figures, "low"))
    last = oom_advice(plan_memory(WORK, figures, "minimum"))
    assert "--memory" not in last and "lower --resolution" in last


def test_plan_is_recorded_as_json_ready_dict():
    data = plan_memory(WORK, gpu(80)).as_dict()
    assert data["level"] == "high" and data["estimated_peak_gb"] > 5
    assert set(data) >= {"offload", "decode_chunk", "vae_tiling", "reason", "budget_gb"}
