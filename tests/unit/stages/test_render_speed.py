"""lexflow.stages.render after the speed-up (issue 14): the grid composed by reshape, the header
drawn once per value set and PNG at zlib's fastest level give the same pixels as the per-tile
loop that drew the labels on every grid, and the PNG decodes to exactly those pixels."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from lexflow.stages import render


def reference_grid(frames: np.ndarray, values: tuple[float, ...] | None) -> np.ndarray:
    """The grid as it was composed before: tile by tile, labels drawn on every grid."""
    rows, steps, _, h, w = frames.shape
    scale = max(1, int(np.ceil(render.MIN_CELL / max(h, w))))
    tiles = render._to_uint8(frames)
    if scale > 1:
        tiles = tiles.repeat(scale, axis=2).repeat(scale, axis=3)
    th, tw, pad = h * scale, w * scale, render.PAD
    top = render.HEADER if values is not None else 0
    canvas = np.full((top + rows * (th + pad) + pad, steps * (tw + pad) + pad, 3), 255, np.uint8)
    for r in range(rows):
        for s in range(steps):
            y, x = top + pad + r * (th + pad), pad + s * (tw + pad)
            canvas[y : y + th, x : x + tw] = tiles[r, s]
    if values is not None:
        pil = Image.fromarray(canvas)
        draw = ImageDraw.Draw(pil)
        for s, v in enumerate(values):
            draw.text((pad + s * (tw + pad) + 2, 1), f"{v:+.1f}", fill=(0, 0, 0))
        canvas = np.asarray(pil)
    return canvas


@pytest.mark.parametrize("shape", [(4, 5, 3, 32, 32), (2, 7, 1, 28, 28), (3, 4, 3, 64, 48),
                                   (1, 1, 3, 100, 80), (2, 3, 3, 5, 9)])
@pytest.mark.parametrize("labelled", [False, True])
def test_grid_and_png_pixels_match_the_per_tile_loop(shape: tuple[int, ...], labelled: bool) -> None:
    rng = np.random.default_rng(sum(shape))
    frames = rng.random(shape, dtype=np.float32)
    values = tuple(float(v) for v in np.linspace(-3, 3, shape[1])) if labelled else None
    expected = reference_grid(frames, values)
    grid = render.traversal_grid(frames, values)
    assert grid.shape == expected.shape and grid.dtype == np.uint8
    assert np.array_equal(grid, expected)
    decoded = np.asarray(Image.open(io.BytesIO(render.png_bytes(grid))).convert("RGB"))
    assert np.array_equal(decoded, expected)


def test_header_is_drawn_once_per_value_set_and_grids_do_not_share_memory() -> None:
    render._header.cache_clear()
    frames = np.zeros((2, 3, 3, 16, 16), np.float32)
    a = render.traversal_grid(frames, (-1.0, 0.0, 1.0))
    b = render.traversal_grid(frames + 1.0, (-1.0, 0.0, 1.0))
    info = render._header.cache_info()
    assert (info.misses, info.hits) == (1, 1)
    assert a[: render.HEADER].min() < 128  # the labels are there (dark text)
    a[0, 0] = 7  # a grid is the caller's own array, never the cached header
    assert render.traversal_grid(frames, (-1.0, 0.0, 1.0))[0, 0, 0] == 255
    assert not np.array_equal(a[render.HEADER :], b[render.HEADER :])


def test_png_uses_the_fast_zlib_level_and_filters_repeated_rows() -> None:
    """Level 1 with run-length matches is what makes encoding cheap; the file stays a valid,
    lossless PNG, and upscaled (repeated) rows cost next to nothing."""
    grid = render.traversal_grid(np.random.default_rng(0).random((4, 5, 3, 32, 32), np.float32),
                                 (-2.0, -1.0, 0.0, 1.0, 2.0))
    fast = render.png_bytes(grid)
    assert render.PNG_LEVEL == 1 and render.PNG_STRATEGY == zlib.Z_RLE
    assert fast.startswith(b"\x89PNG")
    img = Image.open(io.BytesIO(fast))
    img.verify()  # chunk CRCs and the stream
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(fast))), grid)
    doubled = np.repeat(grid, 2, axis=0)
    assert len(render.png_bytes(doubled)) < 1.05 * len(fast)


@pytest.mark.parametrize("image", [np.zeros((3, 4), np.uint8), np.zeros((2, 2, 4), np.uint8),
                                   np.full((5, 1, 3), 200, np.uint8)])
def test_png_of_other_arrays_decodes_to_the_same_pixels(image: np.ndarray) -> None:
    decoded = np.asarray(Image.open(io.BytesIO(render.png_bytes(image))))
    assert np.array_equal(decoded, image)
