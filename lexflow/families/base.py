"""What a synthetic data family is: a generator with known factors, and the words that name them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

KINDS = ("continuous", "periodic", "categorical")
SUPERVISION = ("pairs", "none")
"""TrainSettings.supervision values: weakly supervised pairs (Ada-GVAE) or none."""


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
        supervision: ``pairs`` (weakly supervised, Ada-GVAE of Locatello et al. 2020: ``n`` pairs
            of images that differ in one factor, see :meth:`Family.pairs` and
            lexflow.families.vae.share_unchanged) or ``none`` (``n`` independent images, the
            plain beta-TCVAE objective, as the demo's VAE is trained).
        latent_dim, n (training images or pairs), epochs, beta (total-correlation weight),
        batch_size (images per step), lr.
    """

    model: str = "mask"
    supervision: str = "pairs"
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
        sample: ``sample(n, rng) -> {name: [n] values}``: every factor drawn independently, plus
            any hidden value the renderer needs (digits: which scan of the class is drawn).
        render: ``render(values) -> float32 [n, 3, 32, 32]`` in [0, 1], from what ``sample`` gives.
        train: the default training settings of its VAE.
        linked: (factor, hidden value) pairs: the hidden value is drawn again whenever the factor
            is (a new digit is a new scan).
    """

    name: str
    description: str
    factors: tuple[Factor, ...]
    sample: Callable[[int, np.random.Generator], dict[str, np.ndarray]]
    render: Callable[[dict[str, np.ndarray]], np.ndarray]
    train: TrainSettings
    linked: tuple[tuple[str, str], ...] = ()

    def generate(self, n: int, *, seed: int = 0) -> FamilyBatch:
        """``n`` images with independent factors; deterministic in ``seed`` (numpy default_rng)."""
        if n < 0:
            raise ValueError(f"n must be non-negative, got {n}")
        values = self.sample(n, np.random.default_rng(seed))
        return FamilyBatch(self.render(values), {f.name: values[f.name] for f in self.factors})

    def pairs(self, n: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``n`` pairs of images ([n, 3, 32, 32] each) that differ in one factor.

        The factor is chosen uniformly per pair and drawn again (with its linked hidden values);
        every other value is shared. A categorical factor may be drawn to the same class, so a
        few pairs are equal, as in Locatello et al. (2020). Deterministic in ``seed``.
        """
        if n < 0:
            raise ValueError(f"n must be non-negative, got {n}")
        rng = np.random.default_rng(seed)
        first, fresh = self.sample(n, rng), self.sample(n, rng)
        which = rng.integers(0, len(self.factors), n)
        second = {k: v.copy() for k, v in first.items()}
        for j, fac in enumerate(self.factors):
            changed = which == j
            for key in (fac.name, *(h for f, h in self.linked if f == fac.name)):
                second[key][changed] = fresh[key][changed]
        return self.render(first), self.render(second)

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
