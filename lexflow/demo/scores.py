"""How strongly one latent's posterior means follow a factor: the scores of the demo's and the
synthetic families' factor tables (lexflow.demo.train.factor_scores,
lexflow.families.train.factor_scores). numpy only."""

from __future__ import annotations

import numpy as np


def _rank(a: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(np.float64)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = _rank(a), _rank(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def correlation_ratio(categories: np.ndarray, values: np.ndarray) -> float:
    """Eta: sqrt(between-group variance / total variance), in [0, 1]."""
    total = ((values - values.mean()) ** 2).sum()
    if total <= 0:
        return 0.0
    between = sum((categories == c).sum() * (values[categories == c].mean() - values.mean()) ** 2
                  for c in np.unique(categories))
    return float(np.sqrt(between / total))
