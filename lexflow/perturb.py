"""Perturbation: which latent codes to decode.

For a VAE with a standard normal prior, latent z_i is set to each frame value (prior std units,
-span .. +span, increasing) while the others keep the values of a base code z ~ N(0, I). Base codes
come from ``seed`` so a rerun draws the same grids. The disentanglement bias adds a comparison row:
the same traversal of z_i with another latent z_j clamped to a different value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lexflow.config import ExplainConfig


@dataclass(frozen=True)
class TraversalPlan:
    """The codes to decode for a model with ``latent_dim`` latents.

    Attributes:
        latent_dim: d.
        values: frame values in prior std units, increasing (the grid's columns).
        base_codes: float32 [rows, d], one base code per grid row, drawn from N(0, I).
    """

    latent_dim: int
    values: tuple[float, ...]
    base_codes: np.ndarray

    @classmethod
    def from_config(cls, latent_dim: int, config: ExplainConfig) -> TraversalPlan:
        rng = np.random.default_rng(config.seed)
        base = rng.standard_normal((config.rows, latent_dim)).astype(np.float32)
        base.setflags(write=False)
        return cls(latent_dim, tuple(config.frame_values()), base)

    @property
    def rows(self) -> int:
        return int(self.base_codes.shape[0])

    @property
    def steps(self) -> int:
        return len(self.values)

    def codes(self, index: int) -> np.ndarray:
        """float32 [rows * steps, d]: row-major, z_index swept through ``values`` in each row."""
        z = np.repeat(self.base_codes, self.steps, axis=0)
        z[:, index] = np.tile(np.asarray(self.values, dtype=np.float32), self.rows)
        return z

    def clamp_value(self, partner: int) -> float:
        """A value for the clamped latent that differs clearly from the first base code's."""
        span = max(abs(v) for v in self.values)
        current = float(self.base_codes[0, partner])
        return -2.0 * span / 3.0 if current >= 0 else 2.0 * span / 3.0

    def comparison_codes(self, index: int, partner: int) -> np.ndarray:
        """float32 [2 * steps, d]: the first base row's traversal, then the same with
        ``partner`` clamped to :meth:`clamp_value` (the disentanglement comparison row)."""
        z = np.repeat(self.base_codes[:1], 2 * self.steps, axis=0)
        z[:, index] = np.tile(np.asarray(self.values, dtype=np.float32), 2)
        z[self.steps :, partner] = self.clamp_value(partner)
        return z
