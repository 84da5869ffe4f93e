"""One-to-one matching of latents across two versions, and what each pair's status is (pure).

The matching is the Hungarian assignment (``scipy.optimize.linear_sum_assignment``) that
maximises the summed similarity (:mod:`lexflow.diff.similarity`); ties go to the pair with the
same index, so a version diffed against itself pairs every latent with itself. Then, per pair:

=================  ==============================================================================
status             when
=================  ==============================================================================
``same``           both explained, similarity >= ``same_threshold``
``changed``        both explained, ``match_threshold`` <= similarity < ``same_threshold``
``lost``           explained in A; in B its match is not explained, or there is none (b = null;
                   ``nearest`` names the unexplained B latent it matched, if any)
``new``            explained in B; in A its match is not explained, or there is none (a = null)
``unclear``        explained on neither side ("still unclear"; inactive latents included)
=================  ==============================================================================

Two explained latents matched below ``match_threshold`` are not the same latent at all: A's is
``lost`` and B's is ``new``. Every latent of A and of B appears in exactly one entry (as ``a``,
``b`` or ``nearest``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lexflow import names

STATUSES = ("same", "changed", "lost", "new", "unclear")
STATUS_TITLES = {"same": "same meaning", "changed": "changed meaning", "lost": "lost",
                 "new": "new", "unclear": "still unclear"}
SAME_THRESHOLD = 0.75
MATCH_THRESHOLD = 0.35
_TIE = 1e-6  # added to same-index pairs: ties go to the identity


@dataclass(frozen=True)
class Side:
    """One version as the diff read it.

    Attributes:
        uri: the URI as given (``models:/vae@champion``); model_uri: pinned
            (``models:/vae/3``, or ``models:/m-<id>`` for an unregistered logged model).
        name, version: the registered version (None for an unregistered logged model).
        alias: the alias the URI named, if any.
        run_id: the explanation run read; latent_dim: d.
        explainer: the explainer URI; config: the run's options (params, as strings).
        latents: index -> the latent's record of explanations.json (only the latents the run
            measured: a subset run has fewer).
        traversal_kind: ``latent`` (one latent at a time) or what the run moved instead.
    """

    uri: str
    model_uri: str
    name: str | None
    version: str | None
    alias: str | None
    run_id: str
    latent_dim: int
    explainer: str
    config: Mapping[str, str]
    latents: Mapping[int, Mapping[str, Any]]
    traversal_kind: str = "latent"

    def record(self, index: int | None) -> Mapping[str, Any] | None:
        return None if index is None else self.latents.get(index)

    def explained(self, index: int) -> bool:
        rec = self.latents.get(index) or {}
        return rec.get("status") == "explained" and bool(rec.get("explanation"))

    def explanation(self, index: int | None) -> str | None:
        rec = self.record(index) or {}
        text = rec.get("explanation")
        return str(text) if text and rec.get("status") == "explained" else None

    def certainty(self, index: int | None) -> float | None:
        rec = self.record(index)
        if rec is None or rec.get("certainty") is None:
            return None
        return float(rec["certainty"])

    def label(self, index: int | None) -> str | None:
        return None if index is None else names.latent_label(index, self.latent_dim)

    def describe(self) -> dict[str, Any]:
        return {"uri": self.uri, "model_uri": self.model_uri, "name": self.name,
                "version": self.version, "alias": self.alias, "run_id": self.run_id,
                "latent_dim": self.latent_dim, "explainer": self.explainer,
                "measured_latents": len(self.latents)}


@dataclass(frozen=True)
class Match:
    """One entry of the diff.

    Attributes:
        a, b: latent index in A and in B (None for lost / new / an unpaired unclear latent).
        status: one of :data:`STATUSES`.
        similarity: the combined similarity of the pair in [0, 1] (for lost/new: of the pair
            the matching formed, when there was one), or None.
        certainty_a, certainty_b: each side's certainty (None where there is no latent).
        explanation_a, explanation_b: each side's explanation (None: no clear explanation).
        nearest: for lost/new, the other side's latent it was matched to (unexplained there).
        components: the similarity components of the pair (behaviour, evidence, text).
        reversed: the pair does the same change in opposite directions.
    """

    a: int | None
    b: int | None
    status: str
    similarity: float | None
    certainty_a: float | None = None
    certainty_b: float | None = None
    explanation_a: str | None = None
    explanation_b: str | None = None
    nearest: int | None = None
    components: Mapping[str, float] = field(default_factory=dict)
    reversed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "status": self.status,
                "similarity": None if self.similarity is None else round(self.similarity, 4),
                "certainty_a": self.certainty_a, "certainty_b": self.certainty_b,
                "explanation_a": self.explanation_a, "explanation_b": self.explanation_b,
                "nearest": self.nearest,
                "components": {k: round(v, 4) for k, v in self.components.items()},
                "reversed": self.reversed}


def assign(similarity: np.ndarray) -> list[tuple[int, int]]:
    """The one-to-one pairs (i, j) maximising the summed similarity (Hungarian); ties go to i == j."""
    from scipy.optimize import linear_sum_assignment

    if similarity.size == 0:
        return []
    s = similarity.astype(float).copy()
    k = min(s.shape)
    s[np.arange(k), np.arange(k)] += _TIE
    rows, cols = linear_sum_assignment(s, maximize=True)
    return sorted(zip(rows.tolist(), cols.tolist(), strict=True))


def classify(a: Side, b: Side, similarity: np.ndarray, components: Mapping[str, np.ndarray],
             signed: np.ndarray, *, same_threshold: float = SAME_THRESHOLD,
             match_threshold: float = MATCH_THRESHOLD) -> tuple[Match, ...]:
    """Every latent of both sides in one entry, A's order first, then B's new latents."""
    pairs = assign(similarity)

    def entry(i: int | None, j: int | None, status: str, *, paired: tuple[int, int] | None = None,
              nearest: int | None = None) -> Match:
        comps: dict[str, float] = {}
        sim = rev = None
        if paired is not None:
            pi, pj = paired
            sim = float(similarity[pi, pj])
            comps = {n: float(m[pi, pj]) for n, m in components.items() if not np.isnan(m[pi, pj])}
            rev = bool(signed[pi, pj] < -0.5)
        return Match(i, j, status, sim, a.certainty(i), b.certainty(j), a.explanation(i),
                     b.explanation(j), nearest, comps, bool(rev))

    out: list[Match] = []
    seen_a, seen_b = set(), set()
    for i, j in pairs:
        seen_a.add(i)
        seen_b.add(j)
        ea, eb = a.explained(i), b.explained(j)
        s = float(similarity[i, j])
        if ea and eb and s >= match_threshold:
            out.append(entry(i, j, "same" if s >= same_threshold else "changed", paired=(i, j)))
        elif ea and eb:
            out.append(entry(i, None, "lost", paired=(i, j)))
            out.append(entry(None, j, "new", paired=(i, j)))
        elif ea:
            out.append(entry(i, None, "lost", paired=(i, j), nearest=j))
        elif eb:
            out.append(entry(None, j, "new", paired=(i, j), nearest=i))
        else:
            out.append(entry(i, j, "unclear", paired=(i, j)))
    for i in range(similarity.shape[0]):
        if i not in seen_a:
            out.append(entry(i, None, "lost" if a.explained(i) else "unclear"))
    for j in range(similarity.shape[1]):
        if j not in seen_b:
            out.append(entry(None, j, "new" if b.explained(j) else "unclear"))

    def order(m: Match) -> tuple[int, int]:
        return (0, m.a) if m.a is not None else (1, m.b if m.b is not None else 0)

    return tuple(sorted(out, key=order))
