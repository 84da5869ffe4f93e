"""Render traversals as PNG grids: rows = base samples, columns = frame values, increasing.

Speed (benchmarks/measure_stage.py): the grid is composed with array reshapes (no per-tile
loop), the header of value labels is drawn once per (values, tile width) and reused, and PNG
uses zlib's fastest level. PNG is lossless, so the decoded pixels are the same at every level;
only the file size changes (a few percent larger on these flat-coloured grids).
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np

MIN_CELL = 64  # pixels; small decoders are upscaled (nearest) so people and MLLMs can see them
PAD = 2
HEADER = 14
PNG_LEVEL = 1  # zlib level: 1 is several times faster than PIL's default 6 on these grids


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
    # and the cell layout are one broadcast assignment into a view of the canvas.
    cells = canvas[top : top + rows * (th + PAD), : steps * (tw + PAD)]
    cells = cells.reshape(rows, th + PAD, steps, tw + PAD, 3)[:, PAD:, :, PAD:]
    cells = cells.reshape(rows, h, scale, steps, w, scale, 3)
    cells[...] = tiles.transpose(0, 2, 1, 3, 4)[:, :, None, :, :, None]
    if values is not None:
        canvas[:HEADER] = _header(tuple(float(v) for v in values), tw, width)
    return canvas


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=PNG_LEVEL)
    return buf.getvalue()
