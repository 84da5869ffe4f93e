"""The stated similarity between latent i of version A and latent j of version B (pure).

Three components, each in [0, 1] and each a matrix [d_A, d_B] (NaN where it cannot be computed):

- ``behaviour``: what the latents do when both decoders are re-run on the *same* base codes
  (:mod:`lexflow.diff.behaviour`; only when the latent dimensions agree). The mean of two
  absolute cosines: of the measured property trajectories (x, y, scale, hue, ... along the
  traversal, relative to its middle frame, in units of a notable change) and of the mean pixel
  change along the traversal. This is what recovers a permutation of latents exactly.
- ``evidence``: the absolute cosine of the per-property signed changes stored in each version's
  explanations.json (median per-row change / notable change). Works across latent_dim.
- ``text``: the similarity of the two explanations (bag-of-words cosine as in the paper, or the
  semantic certainty model), only where both latents are explained.

For behaviour and evidence, two latents that both change nothing score 1, one that changes
nothing against one that does scores 0. Absolute cosines: a latent whose direction flipped
(left->right became right->left) does the same thing, reversed (``reversed`` in the result).

The combined similarity is the weighted mean of the components available for a pair, with
:data:`WEIGHTS`; the weights of a missing component are spread over the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lexflow.stages.evidence import NOTABLE, PROPERTIES
from lexflow.uncertainty import Similarity

WEIGHTS: dict[str, float] = {"behaviour": 0.5, "evidence": 0.2, "text": 0.3}
COMPONENTS = tuple(WEIGHTS)


@dataclass(frozen=True)
class Components:
    """The component matrices [d_A, d_B], each in [0, 1] or NaN where unavailable.

    Attributes:
        values: component name -> matrix.
        signed: [d_A, d_B] signed cosine of what the latents do (behaviour when available,
            else stored evidence); negative means the same change in the opposite direction.
    """

    values: Mapping[str, np.ndarray]
    signed: np.ndarray

    def combined(self) -> np.ndarray:
        """The weighted mean of the available components per pair, in [0, 1]."""
        shape = self.signed.shape
        total = np.zeros(shape)
        weight = np.zeros(shape)
        for name, m in self.values.items():
            ok = ~np.isnan(m)
            total[ok] += WEIGHTS[name] * m[ok]
            weight[ok] += WEIGHTS[name]
        return np.divide(total, weight, out=np.zeros(shape), where=weight > 0)


def cosine_matrix(x: np.ndarray, y: np.ndarray, eps: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Signed cosine [n, m] of the rows of x and y, with the rule for rows that are (near) zero:
    both zero -> 1, one zero -> 0. Returns (signed cosine, abs cosine with that rule)."""
    nx = np.linalg.norm(x, axis=1)
    ny = np.linalg.norm(y, axis=1)
    signed = (x @ y.T) / np.maximum(np.outer(nx, ny), eps)
    zx, zy = nx < eps, ny < eps
    absolute = np.abs(signed)
    absolute[zx[:, None] & zy[None, :]] = 1.0
    absolute[zx[:, None] ^ zy[None, :]] = 0.0
    signed[zx[:, None] | zy[None, :]] = 0.0
    return signed, np.clip(absolute, 0.0, 1.0)


def evidence_vector(record: Mapping[str, Any] | None) -> np.ndarray | None:
    """A latent's stored evidence as a vector over PROPERTIES: median per-row change / notable
    (zero for an inactive latent); None when the record has no evidence."""
    ev = (record or {}).get("evidence")
    if not isinstance(ev, Mapping) or not isinstance(ev.get("properties"), Mapping):
        return None
    if not ev.get("active", True):
        return np.zeros(len(PROPERTIES))
    out = np.zeros(len(PROPERTIES))
    for k, name in enumerate(PROPERTIES):
        prop = ev["properties"].get(name) or {}
        rows = [float(v) for v in prop.get("per_row") or () if np.isfinite(v)]
        if rows:
            out[k] = float(np.median(rows)) / NOTABLE[name][0]
    return out


def evidence_similarity(a: Sequence[Mapping[str, Any] | None], b: Sequence[Mapping[str, Any] | None]
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(abs similarity, signed cosine) [len(a), len(b)] of stored evidence; NaN where a record
    has none."""
    va = [evidence_vector(r) for r in a]
    vb = [evidence_vector(r) for r in b]
    width = len(PROPERTIES)
    xa = np.stack([v if v is not None else np.zeros(width) for v in va]) if va else np.zeros((0, width))
    xb = np.stack([v if v is not None else np.zeros(width) for v in vb]) if vb else np.zeros((0, width))
    signed, absolute = cosine_matrix(xa, xb)
    missing = np.array([v is None for v in va])[:, None] | np.array([v is None for v in vb])[None, :]
    absolute[missing] = np.nan
    signed[missing] = 0.0
    return absolute, signed


def text_similarity(a: Sequence[str | None], b: Sequence[str | None], similarity: Similarity
                    ) -> np.ndarray:
    """[len(a), len(b)] similarity of explanations; NaN where either latent has none."""
    out = np.full((len(a), len(b)), np.nan)
    ia = [i for i, t in enumerate(a) if t]
    ib = [j for j, t in enumerate(b) if t]
    if not ia or not ib:
        return out
    texts = [str(a[i]) for i in ia] + [str(b[j]) for j in ib]
    sim = np.asarray(similarity(texts), dtype=float)
    block = np.clip(sim[: len(ia), len(ia):], 0.0, 1.0)
    out[np.ix_(ia, ib)] = block
    return out


def _directed(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[n, m] cosine of flattened [n, steps, k] and [m, steps, k] trajectories, negative values
    cut to 0, with the zero-row rule of :func:`cosine_matrix`."""
    signed, absolute = cosine_matrix(x.reshape(len(x), -1), y.reshape(len(y), -1))
    zero = (absolute == 1.0) & (signed == 0.0)  # both rows zero
    return np.where(zero, 1.0, np.clip(signed, 0.0, 1.0))


def behaviour_similarity(sig_a: Any, sig_b: Any) -> tuple[np.ndarray, np.ndarray]:
    """(similarity, signed) [d_A, d_B] of two :class:`lexflow.diff.behaviour.Signatures`.

    Per pair, the mean of the property-trajectory and pixel-change cosines (property only when
    the images differ in size), taken with B's traversal forwards and reversed (a latent that
    does the same thing in the opposite direction); the better direction counts, and
    ``signed`` is negative where it was the reversed one."""
    def score(b_props: np.ndarray, b_pixels: np.ndarray) -> np.ndarray:
        props = _directed(sig_a.properties, b_props)
        if sig_a.pixels.shape[2] != b_pixels.shape[2]:
            return props
        return 0.5 * (props + _directed(sig_a.pixels, b_pixels))

    forward = score(sig_b.properties, sig_b.pixels)
    backward = score(sig_b.properties[:, ::-1], sig_b.pixels[:, ::-1])
    reversed_ = backward > forward + 1e-9
    return np.maximum(forward, backward), np.where(reversed_, -backward, forward)
