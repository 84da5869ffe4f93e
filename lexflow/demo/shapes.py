"""Procedural dSprites-like images with known generative factors.

Each image is a single filled, uniformly coloured shape on a black 32x32 RGB canvas.
Because every factor is known exactly, a model trained on these images can be checked:
traversing a latent should move exactly one measurable property (position, size,
orientation, hue) of the decoded object.

Rendering is fully vectorised with numpy: each pixel's coverage is estimated from a
signed distance to the shape boundary (``clip(0.5 - d, 0, 1)``), which is a one-pixel box
filter, i.e. antialiasing without supersampling.  20,000 images take about a second.

Coordinate conventions (used by every field below):

* pixel ``(row, col)`` has its centre at ``x = col + 0.5``, ``y = row + 0.5`` (pixels);
  ``y`` grows downwards, as in the image array.
* ``rotation`` is the angle of the object's long axis from the ``+x`` axis, in degrees,
  measured towards ``+y`` (i.e. clockwise on screen).  The doubled-angle second-moment
  orientation ``0.5 * atan2(2*mu_xy, mu_xx - mu_yy)`` of an image recovers it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FACTORS = ("shape", "scale", "rotation", "x", "y", "colour")
"""Names of the generative factors, in the order used throughout the demo."""

SIZE = 32
"""Canvas side in pixels."""

SHAPE_NAMES = ("rectangle", "ellipse", "triangle")
"""``shape`` factor value -> name.  All three are elongated (2:1) so orientation is measurable."""

MIN_LONG_SIDE = 8.0
MAX_LONG_SIDE = 14.0
"""Long side of the ellipse in pixels at ``scale == 0`` and ``scale == 1``.  The other shapes
have the same area as the ellipse (so "scale" means area whatever the shape, and a latent
for size need not also encode shape): the rectangle's long side is 0.89x, the triangle's
height 1.14x the ellipse's."""

TRIANGLE_BASE = 0.6
"""Base : height of the isosceles triangle (its second moments differ 3.7 : 1 along/across)."""

_RECT_LONG = float(np.sqrt(np.pi / 4.0))  # rectangle L x L/2 with the area of the ellipse
_TRIANGLE_HEIGHT = float(np.sqrt(np.pi / 8.0 / (TRIANGLE_BASE / 2.0)))  # h * b / 2 = pi L^2 / 8

MARGIN = 11.0
"""Centre positions lie in ``[MARGIN, SIZE - MARGIN]`` pixels (11 to 21): the farthest point
of any object from its centroid (the triangle's apex, 10.7 px at full scale) stays inside."""

_CHUNK = 2048


@dataclass(frozen=True)
class ShapesBatch:
    """A batch of rendered images together with the factors that generated them.

    Attributes:
        images: float32 ``[N, 3, 32, 32]`` RGB in ``[0, 1]``, black background; the object
            has full-saturation, full-value colour, blended with black on antialiased edges.
        factors: one ``[N]`` array per name in :data:`FACTORS`:

            * ``shape``: int64 in ``{0, 1, 2}`` = rectangle (2:1), ellipse (2:1), isosceles
              triangle (base 0.6 x height), see :data:`SHAPE_NAMES`.
            * ``scale``: float in ``[0, 1]``; object area is that of a 2:1 ellipse with long
              side ``MIN_LONG_SIDE + scale * (MAX_LONG_SIDE - MIN_LONG_SIDE)`` px (8 to 14 px,
              i.e. 25 to 77 px^2), for every shape.
            * ``rotation``: float in ``[0, 90)`` degrees, angle of the long axis (see the
              module docstring).  The range avoids the 180-degree symmetry of the
              rectangle and ellipse, so it is not periodic and plain correlation works.
            * ``x``, ``y``: float in ``[0, 1]``; centre (area centroid) of the object at
              ``MARGIN + value * (SIZE - 2 * MARGIN)`` pixels (11 to 21 px).
            * ``colour``: hue in ``[0, 1)`` (periodic: 0 and 1 are both red); the object
              colour is HSV ``(hue, 1, 1)`` converted to RGB.
    """

    images: np.ndarray
    factors: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.images.shape[0])


def hue_to_rgb(hue: np.ndarray) -> np.ndarray:
    """HSV ``(hue, 1, 1)`` -> RGB in ``[0, 1]``, vectorised; returns shape ``hue.shape + (3,)``."""
    k = np.mod(np.asarray(hue, dtype=np.float32)[..., None] * 6.0 + np.array([0.0, 4.0, 2.0]), 6.0)
    return np.clip(np.abs(k - 3.0) - 1.0, 0.0, 1.0).astype(np.float32)


def _signed_distance(shape: np.ndarray, long_side: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Approximate signed distance (pixels, negative inside) in the object's local frame.

    ``u`` runs along the long axis and ``v`` across it, both relative to the area centroid;
    ``long_side`` is the ellipse's long side, the other shapes are sized to the same area.
    Exact on straight edges, first-order for the ellipse; that is all a one-pixel
    antialiasing filter needs.
    """
    length = long_side[:, None, None]
    half_long, half_short = length / 2.0, length / 4.0

    # Ellipse: d ~= k (k - 1) / |grad k|, with k the normalised radius (Inigo Quilez's trick).
    k = np.sqrt((u / half_long) ** 2 + (v / half_short) ** 2)
    grad = np.sqrt((u / half_long**2) ** 2 + (v / half_short**2) ** 2)
    ellipse = k * (k - 1.0) / np.maximum(grad, 1e-6)

    rect_half = half_long * _RECT_LONG
    rect = np.maximum(np.abs(u) - rect_half, np.abs(v) - rect_half / 2.0)

    # Triangle with height h along u, base TRIANGLE_BASE * h, centroid at the origin: apex at
    # u = 2h/3, base at u = -h/3.  Intersection of three half-planes.
    height = length * _TRIANGLE_HEIGHT
    half_base = height * TRIANGLE_BASE / 2.0
    norm = np.sqrt(half_base**2 + height**2)
    side = (half_base * (u - 2.0 * height / 3.0) + height * np.abs(v)) / norm
    triangle = np.maximum(-height / 3.0 - u, side)

    s = shape[:, None, None]
    return np.where(s == 0, rect, np.where(s == 1, ellipse, triangle))


def render(
    shape: np.ndarray,
    scale: np.ndarray,
    rotation: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    colour: np.ndarray,
) -> np.ndarray:
    """Render factor arrays (units as in :class:`ShapesBatch`) to float32 ``[N, 3, 32, 32]``."""
    shape = np.asarray(shape)
    n = shape.shape[0]
    out = np.empty((n, 3, SIZE, SIZE), dtype=np.float32)
    grid = np.arange(SIZE, dtype=np.float32) + 0.5
    span = SIZE - 2.0 * MARGIN
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(start + _CHUNK, n))
        cx = (MARGIN + np.asarray(x[sl], dtype=np.float32) * span)[:, None, None]
        cy = (MARGIN + np.asarray(y[sl], dtype=np.float32) * span)[:, None, None]
        theta = np.deg2rad(np.asarray(rotation[sl], dtype=np.float32))[:, None, None]
        dx = grid[None, None, :] - cx
        dy = grid[None, :, None] - cy
        cos, sin = np.cos(theta), np.sin(theta)
        u = dx * cos + dy * sin
        v = -dx * sin + dy * cos
        long_side = MIN_LONG_SIDE + np.asarray(scale[sl], dtype=np.float32) * (MAX_LONG_SIDE - MIN_LONG_SIDE)
        dist = _signed_distance(shape[sl], long_side.astype(np.float32), u, v)
        coverage = np.clip(0.5 - dist, 0.0, 1.0).astype(np.float32)
        rgb = hue_to_rgb(np.asarray(colour[sl]))  # [n, 3]
        out[sl] = coverage[:, None, :, :] * rgb[:, :, None, None]
    return out


def generate(n: int, *, seed: int = 0) -> ShapesBatch:
    """Sample ``n`` images with all factors drawn independently and uniformly.

    Deterministic given ``seed`` (numpy ``default_rng``).  Independence of the factors is
    what makes "one latent per factor" a well-posed target for a disentangling VAE.
    """
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    factors = sample_factors(n, np.random.default_rng(seed))
    images = render(*(factors[name] for name in FACTORS))
    return ShapesBatch(images=images, factors=factors)


def sample_factors(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every factor drawn independently and uniformly from ``rng`` (in :data:`FACTORS` order)."""
    return {
        "shape": rng.integers(0, len(SHAPE_NAMES), size=n).astype(np.int64),
        "scale": rng.uniform(0.0, 1.0, size=n).astype(np.float32),
        "rotation": rng.uniform(0.0, 90.0, size=n).astype(np.float32),
        "x": rng.uniform(0.0, 1.0, size=n).astype(np.float32),
        "y": rng.uniform(0.0, 1.0, size=n).astype(np.float32),
        "colour": rng.uniform(0.0, 1.0, size=n).astype(np.float32),
    }
