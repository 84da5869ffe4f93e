"""Synthetic data families with known factors, for measuring explanation quality.

======== ============================================================ =============================
family   images (32x32 RGB in [0, 1])                                 factors
======== ============================================================ =============================
dsprites one rectangle/ellipse/triangle of any hue on black            shape, scale, rotation, x, y,
         (lexflow.demo.shapes)                                        colour
shapes3d an object on a floor before a wall, flat colours              floor_hue, wall_hue,
                                                                      object_hue, scale, shape,
                                                                      orientation
digits   scikit-learn's handwritten digits, thickened, tinted, placed digit, thickness, colour, x, y
======== ============================================================ =============================

``python -m lexflow.families train --family NAME`` trains (or loads) a family's VAE;
``python -m lexflow.families show --family NAME`` writes a sample grid. Each family generates
20,000 images in seconds.
"""

from __future__ import annotations

from lexflow.families.base import Factor, Family, FamilyBatch, TrainSettings

__all__ = ["FAMILY_NAMES", "Factor", "Family", "FamilyBatch", "TrainSettings", "get_family"]

FAMILY_NAMES = ("dsprites", "shapes3d", "digits")


def get_family(name: str) -> Family:
    """The family called ``name``, or a ConfigError listing the names."""
    import importlib

    from lexflow.errors import ConfigError, did_you_mean

    if name not in FAMILY_NAMES:
        raise ConfigError(f"Unknown family {name!r}. Available: {', '.join(FAMILY_NAMES)}."
                          + did_you_mean(name, FAMILY_NAMES))
    family: Family = importlib.import_module(f"lexflow.families.{name}").FAMILY
    return family
