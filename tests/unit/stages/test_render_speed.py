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


def test_gif_frames_share_one_palette_and_look_like_the_frames() -> None:
    """The animation's frames share one palette, made once before upscaling (issue 14: median
    cut on every upscaled frame was most of the measure stage): up to 256 colours come through
    exactly, more closely; it still goes there and back, loops and keeps its frame time."""
    from PIL import ImageSequence

    rng = np.random.default_rng(0)
    few = np.zeros((1, 5, 3, 16, 16), np.float32)
    for s in range(5):
        few[0, s, :, 4:12, 2 + 2 * s : 6 + 2 * s] = rng.random((3, 1, 1))
    y, x = np.mgrid[0:32, 0:32] / 31.0
    blob = np.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) / 0.05)  # a soft blob changing colour
    colours = [(1, 0, 0), (1, 0.6, 0), (0.4, 1, 0), (0, 0.6, 1), (0.5, 0, 1)]
    smooth = np.stack([0.3 + blob * (np.array(c)[:, None, None] - 0.3)
                       for c in colours])[None].astype(np.float32)  # what decoders draw
    noise = rng.random((1, 5, 3, 32, 32), np.float32)  # the worst case: 5,120 colours
    for frames, tolerance in ((few, 0.0), (smooth, 3.0), (noise, 16.0)):
        gif = Image.open(io.BytesIO(render.traversal_gif(frames)))
        assert gif.info.get("loop") == 0 and gif.info.get("duration") == render.GIF_FRAME_MS
        got = [np.asarray(f.convert("RGB"), np.float32) for f in ImageSequence.Iterator(gif)]
        want = [np.asarray(img, np.float32) for img in render._row_images(frames[0], render.GIF_CELL)]
        want = want + want[-2:0:-1]
        assert len(got) == len(want) == 8
        for g, w in zip(got, want, strict=True):
            assert np.abs(g - w).mean() <= tolerance
