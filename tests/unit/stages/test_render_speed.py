"""lexflow.stages.render after the speed-up (issue 14): the grid composed by reshape, the header
drawn once per value set and PNG deflated by ISA-L give the same pixels as the per-tile
loop that drew the labels on every grid, and the PNG decodes to exactly those pixels. The pictures
for people, drawn with numpy and a GIF container of our own, decode to the frames as PIL's
per-frame resize, paste and GIF writer drew them: each checked against the frames upscaled."""

from __future__ import annotations

import io
import struct
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


def _idat(png: bytes) -> bytes:
    """The concatenated IDAT data of a PNG (its zlib stream)."""
    out, at = b"", 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        if png[at + 4 : at + 8] == b"IDAT":
            out += png[at + 8 : at + 8 + length]
        at += 12 + length
    return out


def test_png_is_deflated_by_isal_into_a_plain_zlib_stream_and_filters_repeated_rows() -> None:
    """ISA-L's deflate is what makes encoding cheap; the file stays a valid, lossless PNG whose
    stream Python's zlib reads, no larger than zlib's level 1 would make it, and upscaled
    (repeated) rows cost next to nothing."""
    grid = render.traversal_grid(np.random.default_rng(0).random((4, 5, 3, 32, 32), np.float32),
                                 (-2.0, -1.0, 0.0, 1.0, 2.0))
    fast = render.png_bytes(grid)
    assert fast.startswith(b"\x89PNG")
    img = Image.open(io.BytesIO(fast))
    img.verify()  # chunk CRCs and the stream
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(fast))), grid)
    stream = _idat(fast)
    rows = zlib.decompress(stream)  # a standard zlib stream: one filter byte + RGB per row
    assert len(rows) == grid.shape[0] * (grid.shape[1] * 3 + 1)
    assert len(stream) <= 1.1 * len(zlib.compress(rows, 1))
    calls: list[int] = []
    real = render.isal_zlib.compress

    def counted(data: object, level: int = -1) -> bytes:
        calls.append(level)
        return real(data, level)  # type: ignore[arg-type]

    render.isal_zlib.compress = counted  # type: ignore[assignment]
    try:
        assert render.png_bytes(grid) == fast
    finally:
        render.isal_zlib.compress = real  # type: ignore[assignment]
    assert calls == [render.PNG_LEVEL]
    doubled = np.repeat(grid, 2, axis=0)
    assert len(render.png_bytes(doubled)) < 1.1 * len(fast)


@pytest.mark.parametrize("image", [np.zeros((3, 4), np.uint8), np.zeros((2, 2, 4), np.uint8),
                                   np.full((5, 1, 3), 200, np.uint8)])
def test_png_of_other_arrays_decodes_to_the_same_pixels(image: np.ndarray) -> None:
    decoded = np.asarray(Image.open(io.BytesIO(render.png_bytes(image))))
    assert np.array_equal(decoded, image)


def _tiles(row: np.ndarray) -> np.ndarray:
    """float [steps, C, H, W] in [0, 1] -> uint8 [steps, H, W, 3], rounded as pictures are."""
    t = np.clip(row * 255.0 + 0.5, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    return np.repeat(t, 3, axis=-1) if t.shape[-1] == 1 else t


def _at_cell(tile: np.ndarray, cell: int) -> np.ndarray:
    """A tile at ``cell`` px on its long side: PIL's nearest upscale, or its box filter down."""
    h, w = tile.shape[:2]
    scale = cell / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    method = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BOX
    return np.asarray(Image.fromarray(tile).resize(size, method))


def _decoded_gif(data: bytes) -> tuple[object, list[tuple[np.ndarray, int]]]:
    """(loop, [(RGB frame, ms)]) as a viewer sees them."""
    from PIL import ImageSequence

    gif = Image.open(io.BytesIO(data))
    frames = [(np.asarray(f.convert("RGB")).copy(), f.info["duration"])
              for f in ImageSequence.Iterator(gif)]
    return gif.info.get("loop"), frames


def _played(frames: list[np.ndarray]) -> list[tuple[np.ndarray, int]]:
    """There and back again, a frame the same as the one before it merged into it (its time
    added), as PIL's GIF writer has always written these animations."""
    out: list[tuple[np.ndarray, int]] = []
    for f in frames + frames[-2:0:-1]:
        if out and np.array_equal(out[-1][0], f):
            out[-1] = (out[-1][0], out[-1][1] + render.GIF_FRAME_MS)
        else:
            out.append((f, render.GIF_FRAME_MS))
    return out


def _blob_frames() -> np.ndarray:
    """A soft blob changing colour, as decoders draw (more than 256 colours in all)."""
    y, x = np.mgrid[0:32, 0:32] / 31.0
    blob = np.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) / 0.05)
    colours = [(1, 0, 0), (1, 0.6, 0), (0.4, 1, 0), (0, 0.6, 1), (0.5, 0, 1)]
    return np.stack([0.3 + blob * (np.array(c)[:, None, None] - 0.3)
                     for c in colours])[None].astype(np.float32)


def _few_colours(shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 4, shape) / 3).astype(np.float32)  # at most 64 colours


# (frames, exact): exact when the row has at most 256 colours (the GIF's palette is its own),
# else the palette is PIL's fast octree over all the row's frames. Sizes cover integer and
# fractional nearest upscales, non-square frames, grey, one step and frames larger than a cell
# (averaged down by PIL's box filter).
GIF_CASES = {
    "few colours, 16 px": (_few_colours((1, 5, 3, 16, 16), 0), True),
    "grey, 28 px": (_few_colours((2, 7, 1, 28, 28), 1), True),
    "64 x 48": (_few_colours((1, 4, 3, 64, 48), 2), True),
    "5 x 9": (_few_colours((2, 3, 3, 5, 9), 3), True),
    "one step": (_few_colours((1, 1, 3, 32, 32), 4), True),
    "two steps": (_few_colours((1, 2, 3, 32, 32), 5), True),
    "smooth blob": (_blob_frames(), False),
    "noise": (np.random.default_rng(6).random((2, 5, 3, 32, 32), np.float32), False),
    "noise, 28 px grey": (np.random.default_rng(7).random((1, 6, 1, 28, 28), np.float32), True),
    "larger than a cell": (np.random.default_rng(8).random((1, 4, 3, 120, 100), np.float32),
                           False),
}


@pytest.mark.parametrize("case", list(GIF_CASES))
def test_gif_frames_are_the_frames_upscaled_there_and_back(case: str) -> None:
    """The animation decodes to the row's frames at GIF_CELL px (nearest upscale), there and
    back again, every frame GIF_FRAME_MS, looping forever: exactly when the row has at most 256
    colours, else through one palette for all frames (PIL's fast octree over the frames at the
    size drawn, before the upscale)."""
    frames, exact = GIF_CASES[case]
    tiles = _tiles(frames[0])
    if max(tiles.shape[1:3]) > render.GIF_CELL:
        tiles = np.stack([_at_cell(t, render.GIF_CELL) for t in tiles])
    n, h, w, _ = tiles.shape
    stacked = Image.fromarray(np.ascontiguousarray(tiles.reshape(n * h, w, 3)))
    assert (stacked.getcolors(256) is not None) == exact
    if not exact:
        quantised = stacked.quantize(256, method=Image.Quantize.FASTOCTREE).convert("RGB")
        tiles = np.asarray(quantised).reshape(n, h, w, 3)
    want = _played([_at_cell(t, render.GIF_CELL) for t in tiles])
    loop, got = _decoded_gif(render.traversal_gif(frames))
    assert loop == 0
    assert len(got) == len(want) == max(1, 2 * n - 2)
    for (g, g_ms), (f, f_ms) in zip(got, want, strict=True):
        assert g_ms == f_ms == render.GIF_FRAME_MS
        assert g.shape == f.shape and max(g.shape[:2]) == render.GIF_CELL
        assert np.array_equal(g, f)
    if not exact:  # close to the frames all the same
        first = _at_cell(_tiles(frames[0])[0], render.GIF_CELL).astype(np.float32)
        assert np.abs(got[0][0] - first).mean() <= 16.0


@pytest.mark.parametrize("same", [[(0, 1), (3, 4)], [(1, 2)], [(0, 1), (1, 2), (2, 3), (3, 4)]])
def test_gif_merges_a_frame_the_same_as_the_one_before(same: list[tuple[int, int]]) -> None:
    """A frame the same as the one before it is not repeated: the one before is shown longer
    (an inactive latent's animation is one still frame, shown for the whole loop)."""
    frames = _few_colours((1, 5, 3, 16, 16), 9)
    for a, b in same:
        frames[:, b] = frames[:, a]
    want = _played([_at_cell(t, render.GIF_CELL) for t in _tiles(frames[0])])
    loop, got = _decoded_gif(render.traversal_gif(frames))
    assert loop == 0 and len(got) == len(want) < 8
    assert sum(ms for _, ms in got) == 8 * render.GIF_FRAME_MS
    for (g, g_ms), (f, f_ms) in zip(got, want, strict=True):
        assert g_ms == f_ms and np.array_equal(g, f)


@pytest.mark.parametrize("shape", [(1, 5, 3, 32, 32), (2, 7, 1, 28, 28), (1, 9, 3, 16, 16),
                                   (1, 3, 3, 5, 9), (1, 4, 3, 64, 48), (1, 6, 3, 40, 70)])
def test_strip_pixels_are_the_picked_frames_at_strip_cell(shape: tuple[int, ...]) -> None:
    """The strip decodes to the picked frames at STRIP_CELL px on the long side (nearest up,
    box filter down), left to right, one white pixel apart."""
    frames = np.random.default_rng(sum(shape)).random(shape, np.float32)
    picks = render.pick_frames(shape[1])
    tiles = [_at_cell(t, render.STRIP_CELL) for t in _tiles(frames[0][picks])]
    h, w = tiles[0].shape[:2]
    want = np.full((h, len(tiles) * (w + 1) - 1, 3), 255, np.uint8)
    for k, t in enumerate(tiles):
        want[:, k * (w + 1) : k * (w + 1) + w] = t
    img = Image.open(io.BytesIO(render.traversal_strip(frames)))
    assert img.format == "PNG" and img.mode == "RGB"
    assert np.array_equal(np.asarray(img), want)


def test_nearest_upscale_is_pils_resize() -> None:
    """The numpy gather behind both pictures copies the source pixel PIL's nearest resize
    copies, for integer and fractional scales alike."""
    rng = np.random.default_rng(0)
    for h, w, size in [(32, 32, (96, 96)), (28, 28, (96, 96)), (9, 5, (53, 96)),
                       (48, 64, (96, 72)), (7, 33, (96, 20)), (1, 1, (3, 7)), (10, 10, (10, 10))]:
        tiles = rng.integers(0, 256, (3, h, w, 3), dtype=np.uint8)
        got = render._upscale(tiles, size)
        for t, g in zip(tiles, got, strict=True):
            assert np.array_equal(g, np.asarray(Image.fromarray(t).resize(size, Image.NEAREST)))
