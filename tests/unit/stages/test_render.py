"""lexflow.stages.render: the pictures for people (strip, animation, certainty chart) are small,
drawn from the frames they claim, and a picture that cannot be drawn fails alone."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lexflow.errors import LexflowError
from lexflow.stages.render import (
    GIF_CELL,
    STATUS_COLOURS,
    STRIP_CELL,
    RenderError,
    certainty_chart,
    pick_frames,
    traversal_gif,
    traversal_strip,
)


def _frames(channels: int, rows: int = 2, steps: int = 7, size: int = 16) -> np.ndarray:
    """A bright square moving left to right along the row."""
    f = np.zeros((rows, steps, channels, size, size), np.float32)
    for s in range(steps):
        x = s * (size - 4) // (steps - 1)
        f[:, s, :, 6:10, x : x + 4] = 1.0
    return f


def test_pick_frames_spans_the_row() -> None:
    assert pick_frames(7, 5) == [0, 2, 3, 4, 6]
    assert pick_frames(3, 5) == [0, 1, 2]
    assert pick_frames(9, 5) == [0, 2, 4, 6, 8]


@pytest.mark.parametrize("channels", [1, 3])
def test_strip_is_one_row_of_a_few_small_frames(channels: int) -> None:
    img = Image.open(io.BytesIO(traversal_strip(_frames(channels))))
    assert img.format == "PNG" and img.height == STRIP_CELL
    assert img.width == 5 * (STRIP_CELL + 1) - 1
    a = np.asarray(img.convert("L"), np.float32)
    first, last = a[:, :STRIP_CELL], a[:, -STRIP_CELL:]
    # the square is left in the first frame and right in the last
    assert first[:, : STRIP_CELL // 2].sum() > first[:, STRIP_CELL // 2 :].sum()
    assert last[:, STRIP_CELL // 2 :].sum() > last[:, : STRIP_CELL // 2].sum()


@pytest.mark.parametrize("channels", [1, 3])
def test_gif_loops_there_and_back_and_stays_small(channels: int) -> None:
    data = traversal_gif(_frames(channels, steps=9, size=64))
    assert len(data) < 300_000
    img = Image.open(io.BytesIO(data))
    assert img.format == "GIF" and img.is_animated
    assert img.n_frames == 9 + 7  # forwards, then back without repeating the ends
    assert max(img.size) == GIF_CELL


@pytest.mark.parametrize("bad", [
    np.zeros((1, 5, 4, 8, 8), np.float32),  # 4 channels reach no renderer (alpha is dropped)
    np.zeros((1, 5, 2, 8, 8), np.float32),
    np.full((1, 5, 3, 8, 8), np.nan, np.float32),
    np.zeros((5, 3, 8, 8), np.float32),
])
def test_unrenderable_frames_raise_a_lexflow_error(bad: np.ndarray) -> None:
    for draw in (traversal_strip, traversal_gif):
        with pytest.raises(RenderError) as info:
            draw(bad)
        assert isinstance(info.value, LexflowError)


def test_certainty_chart_colours_bars_by_status() -> None:
    items = [("0", 0.9, "explained"), ("1", 0.3, "unclear"), ("2", 0.0, "inactive"),
             ("3", 0.5, "failed")]
    img = Image.open(io.BytesIO(certainty_chart(items, 0.6))).convert("RGB")
    colours = {c for _, c in img.getcolors(1 << 16)}
    for status in ("explained", "unclear", "failed"):
        assert STATUS_COLOURS[status] in colours
    # the explained bar is taller than the unclear one: count its pixels
    px = np.asarray(img).reshape(-1, 3)
    count = {s: int((px == STATUS_COLOURS[s]).all(axis=1).sum()) for s in ("explained", "unclear")}
    assert count["explained"] > 2 * count["unclear"]
