"""GenerationRequest: presets, engine choice, timing rules and one-line validation errors."""

import pytest
from pydantic import ValidationError

from img2vid.core.errors import InputError
from img2vid.core.request import EngineKind, GenerationRequest, build_request, output_size


@pytest.mark.parametrize("fields, expected", [
    ({"fps": 0}, "fps=0: allowed range is 1 to 120"),
    ({"guidance_scale": 50}, "guidance_scale=50: allowed range is 0 to 20"),
    ({"num_frames": 10_000}, "num_frames=10000: allowed range is 1 to 3600"),
    ({"duration": 0}, "duration=0: must be more than 0 and at most 120"),
    ({"seed": -1}, "seed=-1: allowed range is 0 to 9223372036854775807"),
    ({"motion": "spin"}, "motion=spin: allowed: static, zoom-in"),
    ({"focus": "1.5,0.2"}, "focus=1.5,0.2: x and y must each be between 0 and 1"),
    ({"focus": "middle"}, "focus=middle: expected x,y fractions"),
    ({"resolution": 999}, "resolution=999: must be one of 256"),
    ({"fps": "fast"}, "fps=fast"),
    ({"duration": 100, "fps": 60}, "6000 frames; the limit is 3600"),
    ({"num_frames": 20, "duration": 5, "fps": 30}, "disagrees with duration"),
    ({"fade_in": 3, "fade_out": 3, "duration": 4}, "longer than the clip"),
    ({"interpolate": 2, "target_fps": 60}, "not both"),
    ({"colour": "red"}, "colour=red: unknown field"),
])
def test_invalid_values_give_one_line_naming_field_value_and_range(fields, expected):
    with pytest.raises(InputError) as err:
        build_request(images=["a.png"], **fields)
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


def test_no_images_is_refused():
    with pytest.raises(InputError, match="images"):
        build_request(images=[])


def test_camera_is_the_default_and_standard_preset_fills_values():
    r = build_request(images=["a.png"])
    assert r.engine is EngineKind.CAMERA
    assert (r.resolution, r.fps, r.duration, r.num_frames) == (1080, 30, 5.0, 150)


def test_model_selects_diffusion_and_leaves_values_to_the_model():
    for preset in ("preview", "standard", "high", "max"):
        r = build_request(images=["a.png"], model="i2vgen-xl", preset=preset)
        assert r.engine is EngineKind.DIFFUSION
        # the model's tier for the preset fills them in the engine (tests/diffusion)
        assert (r.resolution, r.num_frames, r.num_inference_steps) == (None, None, None)
        assert (r.guidance_scale, r.fps) == (None, None)


def test_explicit_values_beat_the_preset_and_duration_sets_frames():
    r = build_request(images=["a.png"], preset="preview", fps=25, duration=2)
    assert (r.fps, r.num_frames, r.resolution) == (25, 50, 720)
    r = build_request(images=["a.png"], num_frames=48, fps=24)
    assert r.duration == 2.0
    r = build_request(images=["a.png"], width=640)
    assert r.width == 640 and r.resolution is None


def test_slideshow_preset_duration_is_per_photo():
    r = build_request(images=["a.png", "b.png", "c.png"], preset="preview")
    assert r.duration == 12.0 and r.num_frames == 288


def test_focus_parses_pairs_and_auto():
    assert build_request(images=["a"], focus="0.6, 0.4").focus == (0.6, 0.4)
    assert build_request(images=["a"], focus="AUTO").focus == "auto"


def test_request_is_frozen_and_round_trips_through_json():
    r = build_request(images=["a.png"], motion="pan-left", focus="0.2,0.8", seed=7)
    with pytest.raises(ValidationError, match="frozen"):
        r.fps = 5  # type: ignore[misc]
    again = GenerationRequest(**r.summary())
    assert again == r


@pytest.mark.parametrize("size, request_fields, expected", [
    ((600, 400), {"resolution": 720}, (1080, 720)),
    ((400, 600), {"resolution": 720}, (720, 1080)),
    ((600, 400), {"width": 641}, (642, 428)),
    ((600, 400), {"width": 320, "height": 320}, (320, 320)),
    ((1000, 333), {"resolution": 256}, (768, 256)),
])
def test_output_size_keeps_aspect_and_even_sides(size, request_fields, expected):
    r = build_request(images=["a"], **request_fields)
    assert output_size(r, *size) == expected
