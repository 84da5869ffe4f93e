"""What a synthetic data family is: a generator with known factors, and the words that name them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

KINDS = ("continuous", "periodic", "categorical")


@dataclass(frozen=True)
class Factor:
    """One generative factor of a family.

    Attributes:
        name: the factor's name (a key of :attr:`FamilyBatch.factors`).
        kind: ``continuous`` (scored with |Spearman|), ``periodic`` (a hue in turns: the best
            |Spearman| with the raw value, its cosine or its sine) or ``categorical`` (the
            correlation ratio eta).
        low, high: the range of its values (inclusive; for categorical: 0 and classes - 1).
        unit: what the values measure.
        words: an explanation names this factor when, for any alternative in ``words``, every
            substring of that alternative occurs in the lower-cased explanation.
    """

    name: str
    kind: str
    low: float
    high: float
    unit: str
    words: tuple[tuple[str, ...], ...]

    def named_by(self, explanation: str | None) -> bool:
        text = (explanation or "").lower()
        return any(all(w in text for w in alt) for alt in self.words)


@dataclass(frozen=True)
class FamilyBatch:
    """Images and the factor values that made them.

    Attributes:
        images: float32 [N, 3, 32, 32] RGB in [0, 1].
        factors: factor name -> [N] values (units and ranges in the family's :class:`Factor`).
    """

    images: np.ndarray
    factors: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True)
class TrainSettings:
    """How the family's VAE is trained (the defaults of ``python -m lexflow.families train``).

    Attributes:
        model: ``mask`` (lexflow.demo.vae.BetaTCVAE: one coloured mask on black) or
            ``layered`` (lexflow.families.vae.LayeredVAE with ``layers`` coloured layers).
        latent_dim, n (training images), epochs, beta (total-correlation weight), batch_size, lr.
    """

    model: str = "mask"
    layers: int = 1
    latent_dim: int = 8
    n: int = 20_000
    epochs: int = 8
    beta: float = 6.0
    batch_size: int = 256
    lr: float = 2e-3


@dataclass(frozen=True)
class Family:
    """A synthetic data family with known factors.

    Attributes:
        name: the family's name (``dsprites``, ``shapes3d``, ``digits``).
        description: one line for people.
        factors: the generative factors, in order.
        generate: ``generate(n, seed=...) -> FamilyBatch``, deterministic in the seed.
        train: the default training settings of its VAE.
    """

    name: str
    description: str
    factors: tuple[Factor, ...]
    generate: Callable[..., FamilyBatch]
    train: TrainSettings

    def factor(self, name: str) -> Factor:
        return next(f for f in self.factors if f.name == name)

    def named_factors(self, explanation: str | None) -> list[str]:
        """The factors an explanation names (by the words of each :class:`Factor`)."""
        return [f.name for f in self.factors if f.named_by(explanation)]


# Word alternatives shared by several families.
COLOUR = (("colour",), ("color",), ("hue",))
X_WORDS = (("left to right",), ("right to left",), ("horizontal",), ("to the left",),
           ("to the right",), ("leftward",), ("rightward",))
Y_WORDS = (("top to bottom",), ("bottom to top",), ("vertical",), ("upward",), ("downward",),
           ("up and down",), ("higher",), ("lower in",))
SCALE_WORDS = (("larger",), ("smaller",), ("size",), ("bigger",), ("scale",), ("grow",),
               ("shrink",))
ROTATION_WORDS = (("rotat",), ("orientation",), ("clockwise",), ("angle",), ("spin",),
                  ("tilt",))
