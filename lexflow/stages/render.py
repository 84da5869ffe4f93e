"""Render traversals: PNG grids (rows = base samples, columns = frame values, increasing) for
explainers, and for people a small strip and an animation per latent and a certainty chart.

Speed (benchmarks/measure_stage.py): the grid is composed with array reshapes (no per-tile
loop), the header of value labels is drawn once per (values, tile width) and reused, and PNG
is filtered with numpy (the upscaled rows repeat) and deflated by ISA-L (:func:`png_bytes`; the
``isal`` package writes the same zlib stream format as Python's zlib, several times faster on
these grids for about the same size). PNG is lossless, so the decoded pixels are the same
whatever the filter or the deflate; only the file size changes.

The pictures for people are drawn with numpy, not per-frame PIL images: the strip is one nearest
upscale (a numpy gather that PIL's own resize defines, :func:`_upscale`) and one canvas through
:func:`png_bytes`; the animation quantises one palette for all its frames, upscales the palette
indices the same way and writes the GIF container itself, LZW-coding each distinct frame once
with PIL's C encoder (:func:`traversal_gif`). A viewer sees the same pixels, frame times and loop
as PIL's per-frame resize, paste and GIF writer gave, at about a third of their time.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from isal import isal_zlib

from lexflow.errors import LexflowError

MIN_CELL = 64  # pixels; small decoders are upscaled (nearest) so people and MLLMs can see them
PAD = 2
HEADER = 14
# Deflate level: ISA-L's 1 (of 0-3) for the grids; zlib's 1 (several times faster than PIL's
# default 6) for the other arrays, which go through PIL.
PNG_LEVEL = 1


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    """float [..., C, H, W] in [0, 1] -> uint8 [..., H, W, 3]."""
    img = np.clip(frames * 255.0 + 0.5, 0, 255).astype(np.uint8)
    img = np.moveaxis(img, -3, -1)
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    return img


@lru_cache(maxsize=64)
def _header(values: tuple[float, ...], tile_width: int, width: int) -> np.ndarray:
    """uint8 [HEADER, width, 3]: the column labels, drawn once per value set and tile width
    (every grid of a run shares them; drawing text is the slow part of composing a grid)."""
    from PIL import Image, ImageDraw

    pil = Image.fromarray(np.full((HEADER, width, 3), 255, np.uint8))
    draw = ImageDraw.Draw(pil)
    for s, v in enumerate(values):
        draw.text((PAD + s * (tile_width + PAD) + 2, 1), f"{v:+.1f}", fill=(0, 0, 0))
    out = np.asarray(pil).copy()
    out.setflags(write=False)
    return out


def traversal_grid(frames: np.ndarray, values: tuple[float, ...] | None = None) -> np.ndarray:
    """uint8 [H', W', 3] image of a grid. frames: float32 [rows, steps, C, H, W] in [0, 1].

    With ``values`` a header row labels each column with its latent value (prior std units).
    """
    rows, steps, _, h, w = frames.shape
    scale = max(1, int(np.ceil(MIN_CELL / max(h, w))))
    tiles = _to_uint8(frames)  # [rows, steps, h, w, 3]
    th, tw = h * scale, w * scale
    top = HEADER if values is not None else 0
    width = steps * (tw + PAD) + PAD
    canvas = np.full((top + rows * (th + PAD) + PAD, width, 3), 255, np.uint8)
    # Each cell is PAD white pixels above and left of its tile; the nearest-neighbour upscale
    # (columns repeated first, so each copied run is a whole tile row) and the cell layout are
    # one broadcast assignment into a view of the canvas.
    cells = canvas[top : top + rows * (th + PAD), : steps * (tw + PAD)]
    cells = cells.reshape(rows, th + PAD, steps, tw + PAD, 3)[:, PAD:, :, PAD:]
    cells = cells.reshape(rows, h, scale, steps, tw, 3)
    wide = np.repeat(tiles, scale, axis=3) if scale > 1 else tiles  # [rows, steps, h, tw, 3]
    cells[...] = wide.transpose(0, 2, 1, 3, 4)[:, :, None]
    if values is not None:
        canvas[:HEADER] = _header(tuple(float(v) for v in values), tw, width)
    return canvas


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_bytes(image: np.ndarray) -> bytes:
    """A PNG of a uint8 [H, W, 3] image (other arrays go through PIL).

    Grids are nearest-upscaled tiles: every repeated row is PNG's "up" filter (all zeros) and
    every other row the "sub" filter (left neighbour; upscaled pixels repeat, so half of it is
    zeros), filtered with numpy and deflated by ISA-L at level PNG_LEVEL. Lossless like any PNG
    (the same decoded pixels). On the measure-stage grids ISA-L deflates several times faster
    than zlib's level 1 with run-length matches, for files of about the same size (both timed by
    benchmarks/measure_stage.py); the numpy filter is faster than PIL's per-row adaptive one.
    """
    img = np.ascontiguousarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or 0 in img.shape:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG", compress_level=PNG_LEVEL)
        return buf.getvalue()
    h, w, c = img.shape
    rows = img.reshape(h, w * c)
    filtered = np.empty((h, w * c + 1), np.uint8)
    filtered[:, 0] = 1  # sub
    filtered[:, 1 : c + 1] = rows[:, :c]
    np.subtract(rows[:, c:], rows[:, :-c], out=filtered[:, c + 1 :])
    repeated = np.zeros(h, bool)
    repeated[1:] = (rows[1:] == rows[:-1]).all(axis=1)
    filtered[repeated, 0] = 2  # up: the row above, so all zeros
    filtered[repeated, 1:] = 0
    data = isal_zlib.compress(filtered.data, PNG_LEVEL)  # a zlib stream, as PNG's IDAT holds
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB, not interlaced
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data)
            + _chunk(b"IEND", b""))


# --- pictures for people: a strip per latent, an animation per latent, a certainty chart ---

STRIP_FRAMES = 5  # frames in a strip: few enough that a 16-row registry table stays readable
STRIP_CELL = 32  # pixels per strip frame (the registry page shows it at this size)
GIF_CELL = 96  # pixels per animation frame
GIF_FRAME_MS = 120

# Status -> bar colour of the certainty chart (the report's colours).
STATUS_COLOURS = {"explained": (46, 139, 87), "unclear": (204, 102, 0), "failed": (178, 0, 0),
                  "inactive": (150, 150, 150), "skipped": (200, 200, 200)}


class RenderError(LexflowError, ValueError):
    """A picture that cannot be drawn from these frames (the grid is unaffected)."""


def _row_tiles(row: np.ndarray, cell: int) -> tuple[np.ndarray, tuple[int, int]]:
    """float [steps, C, H, W] in [0, 1] (C = 1 or 3) -> uint8 tiles [steps, h, w, 3] and the
    (width, height) of ``cell`` px on the long side. Tiles larger than that are averaged down to
    it here (PIL's box filter, per tile); smaller ones are left for :func:`_upscale`."""
    from PIL import Image

    if row.ndim != 4 or row.shape[1] not in (1, 3) or 0 in row.shape:
        raise RenderError(f"cannot draw frames of shape {tuple(row.shape)}: expected "
                          "[steps, C, H, W] with C = 1 (grey) or 3 (RGB)")
    if not np.isfinite(row).all():
        raise RenderError("cannot draw frames with NaN or infinite pixels")
    tiles = _to_uint8(row)
    h, w = tiles.shape[1:3]
    scale = cell / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if scale < 1:
        tiles = np.stack([np.asarray(Image.fromarray(t).resize(size, Image.Resampling.BOX))
                          for t in tiles])
    return tiles, size


@lru_cache(maxsize=32)
def _nearest_map(h: int, w: int, size: tuple[int, int]) -> np.ndarray:
    """int32 [H, W]: for each pixel of an h x w image resized to ``size`` (width, height) by
    PIL's nearest neighbour, the flat index of the source pixel it copies. Made by PIL itself
    (resizing an image of the indices), so a gather with it is PIL's resize, pixel for pixel."""
    from PIL import Image

    probe = Image.fromarray(np.arange(h * w, dtype=np.int32).reshape(h, w))
    out = np.asarray(probe.resize(size, Image.Resampling.NEAREST)).copy()
    out.setflags(write=False)
    return out


def _upscale(tiles: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[n, h, w, ...] -> [n, H, W, ...] of (width, height) ``size``: nearest neighbour, all
    tiles in one numpy gather (the same pixels as PIL's resize of each)."""
    n, h, w = tiles.shape[:3]
    if size == (w, h):
        return tiles
    flat = tiles.reshape(n, h * w, *tiles.shape[3:])
    return np.take(flat, _nearest_map(h, w, size), axis=1)


def pick_frames(steps: int, n: int = STRIP_FRAMES) -> list[int]:
    """``n`` column indices spread evenly from the first to the last frame (all when fewer)."""
    if steps <= n:
        return list(range(steps))
    return sorted({int(round(v)) for v in np.linspace(0, steps - 1, n)})


def traversal_strip(frames: np.ndarray, n: int = STRIP_FRAMES, cell: int = STRIP_CELL) -> bytes:
    """PNG of one row of a traversal: ``n`` frames, left to right in increasing value, 1 white
    pixel apart. frames: float32 [rows, steps, C, H, W] in [0, 1]; the first row is drawn."""
    if frames.ndim != 5:
        raise RenderError(f"cannot draw a strip from frames of shape {tuple(frames.shape)}: "
                          "expected [rows, steps, C, H, W]")
    tiles, size = _row_tiles(frames[0][pick_frames(frames.shape[1], n)], cell)
    tiles = _upscale(tiles, size)  # [k, h, w, 3]
    k, h, w, _ = tiles.shape
    canvas = np.full((h, k, w + 1, 3), 255, np.uint8)  # each frame and the gap after it
    canvas[:, :, :w] = tiles.transpose(1, 0, 2, 3)
    # lossless; PIL's optimize=True cost more than it saved
    return png_bytes(canvas.reshape(h, k * (w + 1), 3)[:, :-1])


def _shared_palette(tiles: np.ndarray) -> tuple[np.ndarray, bytes]:
    """uint8 [n, h, w, 3] -> (uint8 palette indices [n, h, w], RGB palette bytes), one palette
    for all tiles: exact when they have at most 256 colours, else PIL's fast octree."""
    from PIL import Image

    n, h, w, _ = tiles.shape
    image = Image.fromarray(np.ascontiguousarray(tiles.reshape(n * h, w, 3)))
    counted = image.getcolors(256)  # None when there are more: C, stops at the 257th colour
    if counted is None:
        quantised = image.quantize(256, method=Image.Quantize.FASTOCTREE)
        entries = quantised.getpalette("RGB")
        assert entries is not None
        return np.asarray(quantised).reshape(n, h, w), bytes(entries)
    rgb = np.array([c for _, c in counted], np.uint32).reshape(-1, 3)
    colours = np.sort((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2])
    px = tiles.astype(np.uint32)
    index = np.searchsorted(colours, (px[..., 0] << 16) | (px[..., 1] << 8) | px[..., 2])
    palette = np.stack([colours >> 16, (colours >> 8) & 255, colours & 255], axis=1)
    return index.astype(np.uint8), palette.astype(np.uint8).tobytes()


def _gif_bytes(frames: np.ndarray, shown: Sequence[tuple[int, int]], palette: bytes) -> bytes:
    """An animated GIF, looping forever, of palette indices uint8 [n, H, W] sharing the RGB
    ``palette``: ``shown`` is (frame, ms) in the order they play. The container is a few bytes
    per frame, written here; the pixels are LZW-coded by PIL's GIF encoder (C; PIL's in-memory
    encoding holds the GIL), once per distinct frame (a ping-pong shows all but its ends twice).
    The same frames, palette, times and loop as PIL's GIF writer gives, without its per-frame
    image copies, palette checks and deltas to the frame before (a third of the time)."""
    from PIL import Image

    _, height, width = frames.shape
    bits = max(0, (len(palette) // 3 - 1).bit_length() - 1)  # the table holds 2 << bits colours
    out = [b"GIF89a", struct.pack("<HHBBB", width, height, 0x80 | bits, 0, 0),
           palette.ljust(3 * (2 << bits), b"\0"),
           b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"]  # loop forever
    coded: dict[int, bytes] = {}
    for k, ms in shown:
        if k not in coded:
            coded[k] = Image.fromarray(frames[k]).tobytes("gif", "L", 8, 0)
        out += [b"!\xf9\x04\x00" + struct.pack("<H", ms // 10) + b"\x00\x00",  # frame time
                b"," + struct.pack("<HHHHB", 0, 0, width, height, 0), b"\x08", coded[k], b"\x00"]
    out.append(b";")
    return b"".join(out)


def traversal_gif(frames: np.ndarray, cell: int = GIF_CELL) -> bytes:
    """An animated GIF of the first row of a traversal, there and back again, looping, each
    frame shown for GIF_FRAME_MS (a frame the same as the one before it is merged into it, as
    PIL's GIF writer does). frames: float32 [rows, steps, C, H, W] in [0, 1].

    The frames share one palette, made once over all of them at the size drawn before
    upscaling (:func:`_shared_palette`: their own colours when there are at most 256, else
    PIL's fast octree); the palette indices are then upscaled (nearest, one numpy gather, no
    new colours) and written by :func:`_gif_bytes`: no per-frame PIL images or delta frames."""
    if frames.ndim != 5:
        raise RenderError(f"cannot animate frames of shape {tuple(frames.shape)}: "
                          "expected [rows, steps, C, H, W]")
    tiles, size = _row_tiles(frames[0], cell)
    index, palette = _shared_palette(tiles)
    upscaled = np.ascontiguousarray(_upscale(index, size))
    n = len(upscaled)
    shown: list[list[int]] = []  # [frame, ms]
    for k in [*range(n), *range(n - 2, 0, -1)]:  # ping-pong, without repeating the ends
        if shown and np.array_equal(upscaled[k], upscaled[shown[-1][0]]):
            shown[-1][1] += GIF_FRAME_MS
        else:
            shown.append([k, GIF_FRAME_MS])
    return _gif_bytes(upscaled, [(k, ms) for k, ms in shown], palette)


def certainty_chart(items: Sequence[tuple[str, float, str]], threshold: float) -> bytes:
    """PNG bar chart of each item's certainty (label, certainty in [0, 1], status), bars coloured
    by status, with the threshold as a dashed line. Drawn with PIL (no plotting library)."""
    from PIL import Image, ImageDraw

    left, right, top, bottom, plot_h = 34, 10, 22, 30, 160
    bar = max(6, min(28, 640 // max(1, len(items))))
    width = left + right + max(1, len(items)) * bar
    img = Image.new("RGB", (max(width, 330), top + plot_h + bottom), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    y0 = top + plot_h
    draw.text((4, 4), f"certainty per latent (threshold {threshold:.2f})", fill=(0, 0, 0))
    for v in (0.0, 0.5, 1.0):
        y = y0 - v * plot_h
        draw.line([(left - 3, y), (left + len(items) * bar, y)], fill=(220, 220, 220))
        draw.text((4, y - 5), f"{v:.1f}", fill=(80, 80, 80))
    label_every = max(1, int(np.ceil(len(items) * 18 / max(1, len(items) * bar))))
    for k, (label, certainty, status) in enumerate(items):
        c = min(1.0, max(0.0, float(certainty)))
        x = left + k * bar
        colour = STATUS_COLOURS.get(status, (90, 90, 200))
        draw.rectangle([x + 1, y0 - max(1.0, c * plot_h), x + bar - 2, y0], fill=colour)
        if k % label_every == 0:
            draw.text((x + 1, y0 + 4), str(label)[-4:], fill=(0, 0, 0))
    t = min(1.0, max(0.0, float(threshold)))
    yt = y0 - t * plot_h
    for x in range(left, left + len(items) * bar, 8):
        draw.line([(x, yt), (min(x + 4, left + len(items) * bar), yt)], fill=(0, 0, 0), width=1)
    x = left
    for status in ("explained", "unclear", "failed", "inactive"):
        draw.rectangle([x, y0 + 18, x + 8, y0 + 26], fill=STATUS_COLOURS[status])
        draw.text((x + 11, y0 + 17), status, fill=(0, 0, 0))
        x += 16 + 6 * len(status)
    return png_bytes(np.asarray(img))  # lossless; PIL's optimize=True took several times longer
