"""Render traversals as PNG grids: rows = base samples, columns = frame values, increasing."""

from __future__ import annotations

import io

import numpy as np

MIN_CELL = 64  # pixels; small decoders are upscaled (nearest) so people and MLLMs can see them
PAD = 2
HEADER = 14


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    """float [..., C, H, W] in [0, 1] -> uint8 [..., H, W, 3]."""
    img = np.clip(frames * 255.0 + 0.5, 0, 255).astype(np.uint8)
    img = np.moveaxis(img, -3, -1)
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    return img


def traversal_grid(frames: np.ndarray, values: tuple[float, ...] | None = None) -> np.ndarray:
    """uint8 [H', W', 3] image of a grid. frames: float32 [rows, steps, C, H, W] in [0, 1].

    With ``values`` a header row labels each column with its latent value (prior std units).
    """
    rows, steps, _, h, w = frames.shape
    scale = max(1, int(np.ceil(MIN_CELL / max(h, w))))
    tiles = _to_uint8(frames)
    if scale > 1:
        tiles = tiles.repeat(scale, axis=2).repeat(scale, axis=3)
    th, tw = h * scale, w * scale
    top = HEADER if values is not None else 0
    canvas = np.full((top + rows * (th + PAD) + PAD, steps * (tw + PAD) + PAD, 3), 255, np.uint8)
    for r in range(rows):
        for s in range(steps):
            y, x = top + PAD + r * (th + PAD), PAD + s * (tw + PAD)
            canvas[y : y + th, x : x + tw] = tiles[r, s]
    if values is not None:
        from PIL import Image, ImageDraw

        pil = Image.fromarray(canvas)
        draw = ImageDraw.Draw(pil)
        for s, v in enumerate(values):
            draw.text((PAD + s * (tw + PAD) + 2, 1), f"{v:+.1f}", fill=(0, 0, 0))
        canvas = np.asarray(pil)
    return canvas


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=False)
    return buf.getvalue()
