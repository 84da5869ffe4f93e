"""The measure explainer reads scenes: where a traversal changes (wall, floor, background, object,
one of several objects) and what changes there, on synthetic frames drawn in the tests."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lexflow.demo.shapes import hue_to_rgb
from lexflow.explainers.measure import row_answers
from lexflow.families import get_family
from lexflow.stages.evidence import measure_traversal
from lexflow.stages.scenes import analyse, shape_names
from lexflow.tracking.checkpoint import evidence_from_dict
from lexflow.uncertainty import consensus

SIZE = 32
ROWS, STEPS = 3, 5
YS, XS = np.mgrid[0:SIZE, 0:SIZE] + 0.5
RED_TO_BLUE = np.linspace(0, 0.667, STEPS)  # hues in turns


def colour(hue: float, value: float = 1.0) -> np.ndarray:
    return hue_to_rgb(np.array([hue]))[0] * value


def paint(image: np.ndarray, mask: np.ndarray, rgb: np.ndarray) -> None:
    """Blend ``rgb`` into ``image`` [3, H, W] with coverage ``mask`` [H, W] in [0, 1]."""
    image[:] = mask[None] * rgb[:, None, None] + (1 - mask[None]) * image


def square(cx: float, cy: float, half: float) -> np.ndarray:
    return np.clip(half + 0.5 - np.maximum(np.abs(XS - cx), np.abs(YS - cy)), 0, 1)


def disc(cx: float, cy: float, radius: float) -> np.ndarray:
    return np.clip(radius + 0.5 - np.hypot(XS - cx, YS - cy), 0, 1)


def scene(wall: float, floor: float, obj: float, *, horizon: float = 17.0, tilt: float = 0.0,
          shape: str = "square", obj_x: float = 16.0) -> np.ndarray:
    """A wall over a floor (horizon tilted by ``tilt`` degrees counter-clockwise) and an object."""
    image = np.empty((3, SIZE, SIZE), np.float32)
    image[:] = colour(wall, 0.9)[:, None, None]
    slope = -np.tan(np.radians(tilt))  # y grows downwards: counter-clockwise rises to the right
    below = np.clip(YS - (horizon + slope * (XS - SIZE / 2)) + 0.5, 0, 1)
    paint(image, below, colour(floor, 0.75))
    mask = square(obj_x, 21, 4) if shape == "square" else disc(obj_x, 21, 4.5)
    paint(image, mask, colour(obj))
    return image


def traversal(make, values: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """[ROWS, STEPS, 3, H, W]: row r calls make(value, r) for each value."""
    return np.stack([np.stack([make(v, r) for v in values]) for r in range(ROWS)]).astype(np.float32)


def answers_for(frames: np.ndarray) -> list[str]:
    return row_answers(measure_traversal(0, frames))


def test_wall_changing_colour_behind_a_fixed_object_is_the_walls_change() -> None:
    frames = traversal(lambda v, r: scene(wall=v, floor=0.3 + 0.05 * r, obj=0.15), RED_TO_BLUE)
    assert answers_for(frames) == ["the wall (upper background) changes colour from red to blue"] * ROWS


def test_floor_and_object_colour_changes_name_their_part() -> None:
    floor = traversal(lambda v, r: scene(wall=0.6, floor=v, obj=0.15 + 0.1 * r),
                      np.linspace(0, 0.333, STEPS))
    expected = "the floor (lower part of the scene) changes colour from red to green"
    assert answers_for(floor) == [expected] * ROWS
    obj = traversal(lambda v, r: scene(wall=0.6, floor=0.1 * r, obj=v), np.linspace(0.167, 0.5, STEPS))
    assert answers_for(obj) == ["changes the object's colour from yellow to cyan"] * ROWS


def test_an_object_colour_that_passes_through_a_dull_one_is_still_a_colour_change() -> None:
    """Blue at one end, orange at the other, a dark grey between (as a decoder often paints a new
    hue): the hue has no value in the middle frames, yet the row reads "from blue to orange"."""
    def make(v: float, r: int) -> np.ndarray:
        image = scene(wall=0.6, floor=0.3 + 0.05 * r, obj=0.0)
        t = abs(v - 0.5) * 2  # 1 at the ends, 0 in the middle
        rgb = colour(0.62 if v < 0.5 else 0.08) * t + np.full(3, 0.3) * (1 - t)
        paint(image, square(16, 21, 4), rgb.astype(np.float32))
        return image

    frames = traversal(make, np.linspace(0.0, 1.0, STEPS))
    evidence = measure_traversal(0, frames)
    hue = next(c for c in evidence.changes if c.part == "object" and c.property == "hue")
    assert all(abs(s) >= 1.0 for s in hue.row_scores())
    assert answers_for(frames) == ["changes the object's colour from blue to orange"] * ROWS


def test_tilting_horizon_is_the_whole_scene_rotating() -> None:
    frames = traversal(lambda v, r: scene(wall=0.6, floor=0.1 + 0.1 * r, obj=0.9, shape="disc", tilt=v),
                       np.linspace(-25, 25, STEPS))
    assert answers_for(frames) == ["rotates the whole scene counter-clockwise (the horizon tilts)"] * ROWS


def glyph(width: int, hue: float) -> np.ndarray:
    """An 'L' and a bar drawn with strokes ``width`` px wide, on black."""
    image = np.zeros((3, SIZE, SIZE), np.float32)
    mask = np.zeros((SIZE, SIZE), np.float32)
    mask[8:24, 10 : 10 + width] = 1  # the upright of the L
    mask[24 - width : 24, 10:22] = 1  # its foot
    mask[8 : 8 + width, 16:22] = 1  # a bar at the top
    paint(image, mask, colour(hue))
    return image


def test_stroke_thickness_is_named_as_strokes_not_size() -> None:
    frames = traversal(lambda v, r: glyph(int(v), 0.1 + 0.3 * r), np.array([1, 2, 2, 3, 4]))
    assert answers_for(frames) == ["makes the strokes thicker"] * ROWS
    thinner = answers_for(frames[:, ::-1].copy())
    assert thinner == ["makes the strokes thinner"] * ROWS


def test_square_turning_into_a_circle() -> None:
    # The same area all along (a disc of radius 4.5 has the area of a 8x8 square, nearly).
    def make(t: float, r: int) -> np.ndarray:
        image = np.zeros((3, SIZE, SIZE), np.float32)
        cx = 13.0 + 3 * r
        mask = square(cx, 16, 4) if t < 0.5 else disc(cx, 16, 4.5)
        paint(image, mask, colour(0.3 * r))
        return image

    assert answers_for(traversal(make, np.linspace(0, 1, STEPS))) == ["turns the square into a circle"] * ROWS


def test_shape_names_from_elongation_and_corners() -> None:
    names = shape_names(np.array([1.0, 1.0, 2.0, 2.0, 1.9]), np.array([0.03, 0.2, 0.04, 0.2, 0.45]))
    assert list(names) == ["circle", "square", "ellipse", "rectangle", "triangle"]


def two_squares(left_y: float, r: int) -> np.ndarray:
    image = np.zeros((3, SIZE, SIZE), np.float32)
    paint(image, square(8, left_y, 3), colour(0.0))
    paint(image, square(24, 12 + 3 * r, 3), colour(0.6))
    return image


def test_two_objects_only_the_left_one_moves() -> None:
    frames = traversal(two_squares, np.linspace(24, 8, STEPS))
    scene_ = analyse(frames.reshape(-1, 3, SIZE, SIZE))
    assert set(scene_.count) == {2}
    assert answers_for(frames) == ["the left square moves up"] * ROWS


def test_objects_appearing_are_counted() -> None:
    def make(n: float, r: int) -> np.ndarray:
        image = np.zeros((3, SIZE, SIZE), np.float32)
        for k in range(int(n)):
            paint(image, square(6 + 10 * k, 10 + 4 * r, 2.5), colour(0.1 * k))
        return image

    frames = traversal(make, np.array([1, 1, 2, 3, 3]))
    assert list(analyse(frames[0]).count) == [1, 1, 2, 3, 3]
    assert answers_for(frames) == ["increases the number of objects from 1 to 3"] * ROWS


def test_pure_noise_is_no_clear_explanation() -> None:
    rng = np.random.default_rng(0)
    frames = rng.random((4, STEPS, 3, SIZE, SIZE)).astype(np.float32)
    ev = measure_traversal(0, frames)
    assert ev.active  # the pixels do change...
    again = measure_traversal(0, rng.random(frames.shape).astype(np.float32))
    verdict = consensus(row_answers(ev) + row_answers(again), threshold=0.5)
    assert verdict.explanation is None  # ...but nothing it can see moves the same way in every row


def test_changes_round_trip_through_to_dict() -> None:
    frames = traversal(lambda v, r: scene(wall=v, floor=0.3, obj=0.15), RED_TO_BLUE)
    ev = measure_traversal(3, frames)
    doc = json.loads(json.dumps(ev.to_dict()))
    assert doc["changes"][0]["part"] == "wall" and doc["changes"][0]["property"] == "colour"
    assert "x" in doc["properties"]  # the single-blob properties are still there
    assert evidence_from_dict(doc) == ev


def test_large_frames_are_analysed_downsampled_with_the_same_answer() -> None:
    frames = traversal(lambda v, r: scene(wall=v, floor=0.3 + 0.05 * r, obj=0.15), RED_TO_BLUE)
    big = frames.repeat(4, axis=3).repeat(4, axis=4)  # 128 x 128
    assert answers_for(big) == answers_for(frames)


@pytest.mark.parametrize(
    ("family", "explanation", "named"),
    [
        ("shapes3d", "the wall (upper background) changes colour from red to blue", ["wall_hue"]),
        ("shapes3d", "the floor (lower part of the scene) changes colour from red to blue", ["floor_hue"]),
        ("shapes3d", "changes the object's colour from red to blue", ["object_hue"]),
        ("shapes3d", "turns the square into a circle", ["shape"]),
        ("shapes3d", "rotates the whole scene counter-clockwise (the horizon tilts)", ["orientation"]),
        ("shapes3d", "moves the object from left to right", []),  # no such factor: scored wrong
        ("digits", "makes the strokes thicker", ["thickness"]),
        ("digits", "changes the object's shape", ["digit"]),
        ("digits", "makes the object larger", []),
        ("dsprites", "turns the square into a circle", ["shape"]),
    ],
)
def test_factor_words_score_scene_explanations(family: str, explanation: str, named: list[str]) -> None:
    assert get_family(family).named_factors(explanation) == named


def test_a_wrong_part_is_scored_wrong() -> None:
    s3 = get_family("shapes3d")
    wall = "the wall (upper background) changes colour from red to blue"
    assert "object_hue" not in s3.named_factors(wall) and "floor_hue" not in s3.named_factors(wall)
    floor = "the floor (lower part of the scene) changes colour"
    assert "wall_hue" not in s3.named_factors(floor)


def test_moves_in_opposite_directions_are_not_the_latents_effect() -> None:
    def make(v: float, r: int) -> np.ndarray:
        image = np.zeros((3, SIZE, SIZE), np.float32)
        x = v if r % 2 == 0 else 32 - v  # even rows move right, odd rows left
        paint(image, disc(x, 16, 4), colour(0.6))
        return image

    frames = np.stack([np.stack([make(v, r) for v in np.linspace(10, 22, STEPS)]) for r in range(4)])
    assert row_answers(measure_traversal(0, frames.astype(np.float32))) == [""] * 4


def test_evidence_saved_before_parts_were_measured_is_read_the_old_way() -> None:
    def make(v: float, r: int) -> np.ndarray:
        image = np.zeros((3, SIZE, SIZE), np.float32)
        paint(image, disc(v, 12 + 3 * r, 4), colour(0.6))
        return image

    doc = measure_traversal(0, traversal(make, np.linspace(10, 22, STEPS))).to_dict()
    del doc["changes"], doc["parts_measured"]
    old = evidence_from_dict(doc)
    assert not old.parts_measured and old.changes == ()
    assert row_answers(old) == ["moves the object from left to right"] * ROWS
