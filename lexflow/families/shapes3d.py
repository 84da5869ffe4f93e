"""3DShapes-like: an object on a floor in front of a wall, rendered flat with numpy (32x32).

The six factors of 3DShapes (Burgess and Kim 2018), drawn independently and uniformly:

* ``floor_hue``, ``wall_hue``, ``object_hue``: hue in turns [0, 1) (periodic); the wall is drawn
  at HSV value 0.9, the floor at 0.75 (a little darker, as if lit from above), the object at 1.
* ``scale``: [0, 1]; the object's area is that of a disc of radius 3.5 + 3.5 * scale px.
* ``shape``: 0 cube (a square), 1 cylinder (an upright 1:2 rectangle), 2 sphere (a disc),
  3 capsule (an upright stadium); all four have the same area at the same scale.
* ``orientation``: camera roll in degrees [-30, 30]: the whole scene (horizon and object) turns
  about the image centre; positive turns it counter-clockwise on screen.

In scene coordinates (before the roll) the horizon is the line y = 17 px (y down) and the object's
centre is at (16, 21) px. Edges are antialiased with the one-pixel box filter of
lexflow.demo.shapes (coverage = clip(0.5 - signed distance, 0, 1)).
"""

from __future__ import annotations

import numpy as np

from lexflow.families.base import (
    COLOUR,
    ROTATION_WORDS,
    SCALE_WORDS,
    Factor,
    Family,
    TrainSettings,
)

SIZE = 32
SHAPE_NAMES = ("cube", "cylinder", "sphere", "capsule")
HORIZON = 17.0
OBJECT_CENTRE = (16.0, 21.0)
WALL_VALUE, FLOOR_VALUE = 0.9, 0.75
_CHUNK = 2048


def _hue_rgb(hue: np.ndarray, value: float) -> np.ndarray:
    from lexflow.demo.shapes import hue_to_rgb

    return hue_to_rgb(hue) * np.float32(value)


def _object_distance(shape: np.ndarray, radius: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (px, negative inside) of each object, u right and v down from its centre."""
    r = radius[:, None, None]
    disc = np.sqrt(u**2 + v**2) - r
    half = np.sqrt(np.pi) * r / 2.0
    square = np.maximum(np.abs(u), np.abs(v)) - half
    w = r * np.sqrt(np.pi / 2.0) / 2.0  # half width of a w x 2w rectangle of the disc's area
    rect = np.maximum(np.abs(u) - w, np.abs(v) - 2.0 * w)
    a = r * np.sqrt(np.pi / (4.0 + np.pi))  # stadium: radius a, straight part 2a
    capsule = np.sqrt(u**2 + np.maximum(np.abs(v) - a, 0.0) ** 2) - a
    s = shape[:, None, None]
    return np.where(s == 0, square, np.where(s == 1, rect, np.where(s == 2, disc, capsule)))


def render(floor_hue: np.ndarray, wall_hue: np.ndarray, object_hue: np.ndarray, scale: np.ndarray,
           shape: np.ndarray, orientation: np.ndarray) -> np.ndarray:
    """Factor arrays -> float32 [N, 3, 32, 32] in [0, 1]."""
    n = len(shape)
    out = np.empty((n, 3, SIZE, SIZE), np.float32)
    grid = np.arange(SIZE, dtype=np.float32) + 0.5
    c = SIZE / 2.0
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(start + _CHUNK, n))
        theta = np.deg2rad(np.asarray(orientation[sl], np.float32))[:, None, None]
        dx = grid[None, None, :] - c
        dy = grid[None, :, None] - c
        # Undo a counter-clockwise (on screen, y down) roll: scene = R(+theta) * screen offset.
        cos, sin = np.cos(theta), np.sin(theta)
        sx = c + dx * cos - dy * sin
        sy = c + dx * sin + dy * cos
        floor = np.clip(0.5 + (sy - HORIZON), 0.0, 1.0)[:, None]
        radius = 3.5 + 3.5 * np.asarray(scale[sl], np.float32)
        dist = _object_distance(np.asarray(shape[sl]), radius, sx - OBJECT_CENTRE[0],
                                sy - OBJECT_CENTRE[1])
        obj = np.clip(0.5 - dist, 0.0, 1.0)[:, None]
        wall_rgb = _hue_rgb(np.asarray(wall_hue[sl]), WALL_VALUE)[:, :, None, None]
        floor_rgb = _hue_rgb(np.asarray(floor_hue[sl]), FLOOR_VALUE)[:, :, None, None]
        obj_rgb = _hue_rgb(np.asarray(object_hue[sl]), 1.0)[:, :, None, None]
        scene = floor * floor_rgb + (1.0 - floor) * wall_rgb
        out[sl] = obj * obj_rgb + (1.0 - obj) * scene
    return out


def sample(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every factor drawn independently and uniformly."""
    return {
        "floor_hue": rng.uniform(0.0, 1.0, n).astype(np.float32),
        "wall_hue": rng.uniform(0.0, 1.0, n).astype(np.float32),
        "object_hue": rng.uniform(0.0, 1.0, n).astype(np.float32),
        "scale": rng.uniform(0.0, 1.0, n).astype(np.float32),
        "shape": rng.integers(0, len(SHAPE_NAMES), n).astype(np.int64),
        "orientation": rng.uniform(-30.0, 30.0, n).astype(np.float32),
    }


def render_values(values: dict[str, np.ndarray]) -> np.ndarray:
    return render(**values)


def _part(*parts: str) -> tuple[tuple[str, ...], ...]:
    return tuple((p, c[0]) for p in parts for c in COLOUR)


FAMILY = Family(
    name="shapes3d",
    description="3DShapes-like: an object on a floor before a wall, six factors, 32x32",
    factors=(
        # " ground", not "ground": "background" ends in it.
        Factor("floor_hue", "periodic", 0.0, 1.0, "hue in turns", _part("floor", " ground")),
        Factor("wall_hue", "periodic", 0.0, 1.0, "hue in turns",
               _part("wall", "background", "backdrop")),
        Factor("object_hue", "periodic", 0.0, 1.0, "hue in turns",
               _part("object", "shape's", "cube", "sphere")),
        Factor("scale", "continuous", 0.0, 1.0, "disc-equivalent radius 3.5 to 7 px", SCALE_WORDS),
        Factor("shape", "categorical", 0, 3, "cube, cylinder, sphere, capsule",
               (("'s shape",), ("shape of",), ("shape from",), ("rounder",), ("angular",),
                ("cube",), ("cylinder",), ("sphere",), ("capsule",), ("morph",),
                # as seen flat: lexflow.stages.scenes names a shape by its corners and elongation
                ("square",), ("circle",), ("rectangle",), ("ellipse",), ("elongated",))),
        Factor("orientation", "continuous", -30.0, 30.0, "degrees of camera roll",
               ROTATION_WORDS + (("camera",), ("viewpoint",), ("horizon",))),
    ),
    sample=sample,
    render=render_values,
    train=TrainSettings(model="layered", layers=3, latent_dim=10, n=12_000, epochs=20),
)
