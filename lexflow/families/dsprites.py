"""dSprites-like: one coloured shape on black (the demo's generator, lexflow.demo.shapes)."""

from __future__ import annotations

import numpy as np

from lexflow.families.base import (
    COLOUR,
    ROTATION_WORDS,
    SCALE_WORDS,
    X_WORDS,
    Y_WORDS,
    Factor,
    Family,
    TrainSettings,
)

SHAPE_WORDS = (("'s shape",), ("shape of",), ("shape from",), ("rounder",), ("angular",),
               ("rectangle",), ("ellipse",), ("triangle",), ("square",), ("circle",), ("morph",))


def sample(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Independent uniform factors, drawn as lexflow.demo.shapes.generate draws them."""
    from lexflow.demo import shapes

    return shapes.sample_factors(n, rng)


def render(values: dict[str, np.ndarray]) -> np.ndarray:
    from lexflow.demo import shapes

    return shapes.render(*(values[name] for name in shapes.FACTORS))


FAMILY = Family(
    name="dsprites",
    description="dSprites-like: a rectangle, ellipse or triangle of any hue on black, 32x32",
    factors=(
        Factor("shape", "categorical", 0, 2, "rectangle, ellipse, triangle", SHAPE_WORDS),
        Factor("scale", "continuous", 0.0, 1.0, "long side 8 to 14 px (same area per shape)",
               SCALE_WORDS),
        Factor("rotation", "continuous", 0.0, 90.0, "degrees", ROTATION_WORDS),
        Factor("x", "continuous", 0.0, 1.0, "centre 11 to 21 px from the left", X_WORDS),
        Factor("y", "continuous", 0.0, 1.0, "centre 11 to 21 px from the top", Y_WORDS),
        Factor("colour", "periodic", 0.0, 1.0, "hue in turns", COLOUR),
    ),
    sample=sample,
    render=render,
    train=TrainSettings(model="mask", latent_dim=8, n=20_000, epochs=8),
)
