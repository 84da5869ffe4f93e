"""Uncertainty per the method: n answers, pairwise similarity, medoid, threshold.

certainty = mean of the off-diagonal pairwise cosine similarities of the answers' bag-of-words
vectors (scikit-learn's CountVectorizer, as the paper's code does). The kept explanation is the
medoid: the answer with the highest mean similarity to the others. Below the threshold the latent
gets "No clear explanation". Failed answers ("") count as similarity 0 to everything, so failures
lower the certainty instead of being silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Consensus:
    """The outcome of comparing one latent's answers.

    Attributes:
        explanation: the medoid answer when certainty >= threshold, else None.
        medoid: the most central non-empty answer (kept even when below threshold), or None.
        certainty: mean off-diagonal similarity in [0, 1]; 1.0 for a single non-empty answer.
        explainable: certainty >= threshold and there is a medoid.
        answers: all answers, "" for failed ones.
    """

    explanation: str | None
    medoid: str | None
    certainty: float
    explainable: bool
    answers: tuple[str, ...]


def bow_similarity(answers: Sequence[str]) -> np.ndarray:
    """Pairwise cosine similarity [n, n] of bag-of-words vectors; rows of empty answers are 0."""
    from sklearn.feature_extraction.text import CountVectorizer

    n = len(answers)
    sim = np.zeros((n, n))
    live = [i for i, a in enumerate(answers) if a.strip()]
    if not live:
        return sim
    try:
        counts = CountVectorizer().fit_transform([answers[i] for i in live]).toarray()
    except ValueError:  # no token of two or more word characters in any answer
        return sim
    vec = counts.astype(float)
    norms = np.linalg.norm(vec, axis=1, keepdims=True)
    unit = np.divide(vec, norms, out=np.zeros_like(vec), where=norms > 0)
    sub = unit @ unit.T
    for a, i in enumerate(live):
        for b, j in enumerate(live):
            sim[i, j] = sub[a, b]
    return sim


Similarity = Callable[[Sequence[str]], np.ndarray]


def similarity_for(spec: str) -> Similarity:
    """The answer-comparison function a ``certainty`` option names.

    ``bow`` is the paper's bag-of-words cosine. ``semantic`` and ``semantic:<path or package>``
    compare sentence embeddings (:mod:`lexflow.semantic`); the model is located and loaded here,
    so a missing package or directory fails before any decoding, and is cached per process.
    """
    if spec == "bow":
        return bow_similarity
    if spec == "semantic" or spec.startswith("semantic:"):
        from lexflow.semantic import SemanticSimilarity

        return SemanticSimilarity(spec)
    from lexflow.errors import ConfigError, did_you_mean

    raise ConfigError(
        f"certainty={spec!r} is not available; use 'bow', 'semantic' or "
        "'semantic:<model directory or package>'." + did_you_mean(spec, ("bow", "semantic"))
    )


def with_readback(c: Consensus, readback: float | None, threshold: float) -> Consensus:
    """``c`` with its certainty multiplied by the encoder's read-back of the latent
    (lexflow.stages.readback), the verdict taken again at ``threshold``; ``c`` itself when there
    is no read-back (a model without an encoder, or ``readback=off``)."""
    if readback is None:
        return c
    certainty = float(np.clip(c.certainty * readback, 0.0, 1.0))
    ok = c.medoid is not None and certainty >= threshold
    return Consensus(c.medoid if ok else None, c.medoid, certainty, ok, c.answers)


def consensus(
    answers: Sequence[str], *, threshold: float, similarity: Similarity = bow_similarity
) -> Consensus:
    """Certainty, medoid and verdict for one latent's answers."""
    answers = tuple(a.strip() for a in answers)
    n = len(answers)
    if n == 0 or not any(answers):
        return Consensus(None, None, 0.0, False, answers)
    if n == 1:
        certainty = 1.0
        medoid = answers[0]
    else:
        sim = similarity(answers)
        off = sim[~np.eye(n, dtype=bool)].reshape(n, n - 1)
        certainty = float(off.mean())
        centrality = off.mean(axis=1)
        centrality[[i for i, a in enumerate(answers) if not a]] = -1.0
        medoid = answers[int(np.argmax(centrality))]
    certainty = float(np.clip(certainty, 0.0, 1.0))
    ok = certainty >= threshold
    return Consensus(medoid if ok else None, medoid, certainty, ok, answers)
