"""Coloured digits: scikit-learn's handwritten digits (load_digits, shipped with the package).

Each image is one 8x8 digit, upsampled to 16x16, thinned or thickened, tinted and placed on a black
32x32 canvas. Factors, drawn independently and uniformly:

* ``digit``: 0-9 (categorical; which of the 1,797 scans is drawn at random for that class).
* ``thickness``: 0-3 (ordinal): 0 = eroded once, 1 = as scanned, 2 = dilated once, 3 = dilated
  twice (grey-level morphology with a 3x3 cross on the 16x16 glyph).
* ``colour``: hue in turns [0, 1) (periodic), full saturation and value.
* ``x``, ``y``: [0, 1]; the glyph's top-left corner at 2 + 12 * value px (a whole pixel).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from lexflow.families.base import COLOUR, X_WORDS, Y_WORDS, Factor, Family, TrainSettings

SIZE = 32
GLYPH = 16
OFFSET_RANGE = 12
THICKNESS_LEVELS = 4


@lru_cache(maxsize=1)
def glyphs() -> tuple[np.ndarray, np.ndarray]:
    """(float32 [1797, 4, 16, 16] glyph intensities in [0, 1] per thickness level, int64 labels)."""
    from scipy import ndimage
    from sklearn.datasets import load_digits

    data = load_digits()
    img = data.images.astype(np.float32) / 16.0
    up = np.clip(ndimage.zoom(img, (1, 2, 2), order=1), 0.0, 1.0)
    cross = ndimage.generate_binary_structure(2, 1)
    levels = np.empty((len(up), THICKNESS_LEVELS, GLYPH, GLYPH), np.float32)
    for i, g in enumerate(up):
        levels[i, 0] = ndimage.grey_erosion(g, footprint=cross)
        levels[i, 1] = g
        levels[i, 2] = ndimage.grey_dilation(g, footprint=cross)
        levels[i, 3] = ndimage.grey_dilation(levels[i, 2], footprint=cross)
    return levels, data.target.astype(np.int64)


def render(index: np.ndarray, thickness: np.ndarray, colour: np.ndarray, x: np.ndarray,
           y: np.ndarray) -> np.ndarray:
    """Scan indices and factors -> float32 [N, 3, 32, 32] in [0, 1]."""
    from lexflow.demo.shapes import hue_to_rgb

    levels, _ = glyphs()
    n = len(index)
    mask = np.zeros((n, SIZE, SIZE), np.float32)
    ox = 2 + np.rint(np.asarray(x) * OFFSET_RANGE).astype(int)
    oy = 2 + np.rint(np.asarray(y) * OFFSET_RANGE).astype(int)
    g = levels[np.asarray(index), np.asarray(thickness)]
    for k in range(n):
        mask[k, oy[k] : oy[k] + GLYPH, ox[k] : ox[k] + GLYPH] = g[k]
    rgb = hue_to_rgb(np.asarray(colour))
    return (mask[:, None] * rgb[:, :, None, None]).astype(np.float32)


def sample(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every factor drawn independently and uniformly, plus ``index``: which scan of the digit."""
    _, labels = glyphs()
    digit = rng.integers(0, 10, n).astype(np.int64)
    order = np.argsort(labels, kind="stable")  # scans grouped by class
    sizes = np.bincount(labels, minlength=10)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    index = order[starts[digit] + (rng.random(n) * sizes[digit]).astype(np.int64)]
    return {
        "digit": digit,
        "index": index,
        "thickness": rng.integers(0, THICKNESS_LEVELS, n).astype(np.int64),
        "colour": rng.uniform(0.0, 1.0, n).astype(np.float32),
        "x": rng.uniform(0.0, 1.0, n).astype(np.float32),
        "y": rng.uniform(0.0, 1.0, n).astype(np.float32),
    }


def render_values(values: dict[str, np.ndarray]) -> np.ndarray:
    return render(values["index"], values["thickness"], values["colour"], values["x"], values["y"])


FAMILY = Family(
    name="digits",
    description="coloured digits: scikit-learn's 8x8 scans upsampled, thickened, tinted, placed",
    factors=(
        Factor("digit", "categorical", 0, 9, "class",
               (("identity",), ("which digit",), ("different digit",), ("morph",), ("into a",),
                ("'s shape",), ("shape of",), ("numeral",))),
        Factor("thickness", "continuous", 0, THICKNESS_LEVELS - 1, "erosion/dilation steps",
               (("thick",), ("thin",), ("bold",), ("stroke",), ("weight",), ("heavier",))),
        Factor("colour", "periodic", 0.0, 1.0, "hue in turns", COLOUR),
        Factor("x", "continuous", 0.0, 1.0, "left edge 2 to 14 px", X_WORDS),
        Factor("y", "continuous", 0.0, 1.0, "top edge 2 to 14 px", Y_WORDS),
    ),
    sample=sample,
    render=render_values,
    linked=(("digit", "index"),),
    train=TrainSettings(model="mask", latent_dim=8, n=12_000, epochs=20),
)
