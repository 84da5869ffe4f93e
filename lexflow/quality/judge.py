"""Reference-free checks of an explanation: can it pick out its latent, and does it say which way?

An optional extension of the explainer contract (:class:`lexflow.explainers.base.Explainer`).
An explainer that can judge adds two methods; nothing else changes::

    class MyExplainer(Explainer):
        def detect(self, explanation: str, candidates: Sequence[ExplainRequest]) -> int | None:
            '''Index (into candidates) of the traversal the explanation describes.'''

        def direction(self, explanation: str, request: ExplainRequest) -> int | None:
            '''+1 when the grid, read left to right, changes as the explanation says the
            latent's increase does; -1 when it runs the other way; 0 when the explanation
            states no direction.'''

Either may return None when the judge could not answer (a failed call, a refusal, a malformed
answer): the suite scores that question as a miss and counts it (:class:`Tally`), so a judge that
fails is never scored as right and a judge that always fails is reported as unavailable.

The candidates and the request are ordinary :class:`ExplainRequest` objects (grid PNG, evidence,
``values``). Grids shown to ``direction`` have no value header (it would give the order away) and
may be reversed; ``values`` then still lists the values as shown, left to right, so a judge must
not read them.

Two kinds of judge, and the figures say which (``judge_basis``, carried into the suite's results):

- every MLLM explainer (openai, anthropic, gemini, ollama, transformers) is its own judge: it is
  asked with the explanation and the grids and answers in JSON (lexflow/explainers/judging.py,
  prompts in lexflow/explainers/judge_prompts.py). Basis :data:`FROM_GRIDS`.
- :class:`MeasureJudge` is the default for the offline ``measure`` explainer: it reads the
  properties and directions the explanation names (the measure explainer's own phrases) and
  compares them with the measured evidence of each grid, the same evidence the explanation came
  from. Its figures are :data:`SELF_CONSISTENCY`, not an independent judgement.

:func:`judge_for` finds an explainer's judge or says how to add one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lexflow.errors import ConfigError
from lexflow.explainers.base import Explainer, ExplainRequest
from lexflow.explainers.judging import FROM_GRIDS
from lexflow.stages.evidence import Evidence

SELF_CONSISTENCY = "self-consistency"
"""A judge that reads the evidence the explanation was written from: agreement with itself."""
UNSTATED = "not stated"
__all__ = ["FROM_GRIDS", "SELF_CONSISTENCY", "Judge", "MeasureJudge", "Tally", "judge_basis", "judge_for"]


@runtime_checkable
class Judge(Protocol):
    """What the reference-free scores need from an explainer (None: no usable answer)."""

    def detect(self, explanation: str, candidates: Sequence[ExplainRequest]) -> int | None: ...

    def direction(self, explanation: str, request: ExplainRequest) -> int | None: ...


def judge_basis(judge: Any) -> str:
    """What the judge's figures measure: its ``judge_basis`` (SELF_CONSISTENCY, FROM_GRIDS, ...)."""
    return str(getattr(judge, "judge_basis", "") or UNSTATED)


@dataclass
class Tally:
    """A judge wrapped to count its questions and the ones it could not answer.

    Attributes:
        judge: the judge asked. asked: questions put to it. unavailable: those answered None.
    """

    judge: Any
    asked: int = 0
    unavailable: int = 0

    def _count(self, answer: int | None) -> int | None:
        self.asked += 1
        self.unavailable += answer is None
        return answer

    def detect(self, explanation: str, candidates: Sequence[ExplainRequest]) -> int | None:
        return self._count(self.judge.detect(explanation, candidates))

    def direction(self, explanation: str, request: ExplainRequest) -> int | None:
        return self._count(self.judge.direction(explanation, request))

    def unless_all_failed(self, score: float | None) -> float | None:
        """``score``, or None (unavailable) when every question went unanswered."""
        return None if self.asked and self.unavailable == self.asked else score


# Phrase -> (property, sign as the latent increases). Longer phrases first ("counter-clockwise"
# before "clockwise"); these are the measure explainer's words plus common synonyms.
CLAIMS: tuple[tuple[str, str, int], ...] = (
    ("left to right", "x", +1), ("right to left", "x", -1),
    ("top to bottom", "y", +1), ("bottom to top", "y", -1),
    ("moves down", "y", +1), ("moves up", "y", -1),
    ("larger", "scale", +1), ("bigger", "scale", +1), ("grows", "scale", +1),
    ("smaller", "scale", -1), ("shrinks", "scale", -1),
    ("counter-clockwise", "rotation", +1), ("anticlockwise", "rotation", +1),
    ("clockwise", "rotation", -1),
    ("more vivid", "saturation", +1), ("washed out", "saturation", -1),
    ("brighter", "brightness", +1), ("darker", "brightness", -1),
    ("increases the contrast", "contrast", +1), ("lowers the contrast", "contrast", -1),
    ("rounder", "shape", +1), ("more angular", "shape", -1),
)


def claims(explanation: str) -> list[tuple[str, int]]:
    """(property, sign) pairs an explanation states, in the order they appear."""
    text = (explanation or "").lower()
    found: list[tuple[int, str, int]] = []
    taken: list[tuple[int, int]] = []
    for phrase, prop, sign in CLAIMS:
        start = text.find(phrase)
        while start >= 0:
            end = start + len(phrase)
            if not any(s < end and start < e for s, e in taken):
                taken.append((start, end))
                found.append((start, prop, sign))
            start = text.find(phrase, end)
    if "colour" in text or "color" in text or "hue" in text:
        found.append((text.find("colo") if "colo" in text else text.find("hue"), "hue", 0))
    seen, out = set(), []
    for _, prop, sign in sorted(found):
        if prop not in seen:
            seen.add(prop)
            out.append((prop, sign))
    return out


def named_hues(explanation: str) -> tuple[float, float] | None:
    """The hues (turns) of "from <colour> to <colour>", or None."""
    import re

    from lexflow.explainers.measure import HUE_NAMES

    hues = {name: h for h, name in HUE_NAMES if h < 1.0}
    m = re.search(r"from (\w+) to (\w+)", (explanation or "").lower())
    if not m or m.group(1) not in hues or m.group(2) not in hues:
        return None
    return hues[m.group(1)], hues[m.group(2)]


def _prop(evidence: Evidence, name: str) -> Any:
    return next(p for p in evidence.properties if p.name == name)


def _circular(a: float, b: float) -> float:
    d = abs(a - b) % 1.0
    return min(d, 1.0 - d)


class MeasureJudge:
    """Judges with the measured evidence; the default for the ``measure`` explainer."""

    judge_basis = SELF_CONSISTENCY

    def detect(self, explanation: str, candidates: Sequence[ExplainRequest]) -> int:
        """The candidate whose evidence moves the named properties most in the named way.

        A property with a stated direction scores its signed median row score (moving the
        wrong way counts against); a colour change without a direction scores |hue score|.
        """
        stated = claims(explanation)
        if not stated or not candidates:
            return 0
        totals = []
        for cand in candidates:
            ev = cand.evidence
            if not ev.active:
                totals.append(-np.inf)
                continue
            score = 0.0
            for prop, sign in stated:
                p = _prop(ev, prop)
                score += p.score if sign == 0 else sign * float(np.median(p.row_scores()))
            totals.append(score / len(stated))
        return int(np.argmax(totals))

    def direction(self, explanation: str, request: ExplainRequest) -> int:
        """+1 / -1 from the first stated direction (or the named start and end colours), else 0."""
        ev = request.evidence
        for prop, sign in claims(explanation):
            if sign != 0:
                change = float(np.median(_prop(ev, prop).row_scores()))
                if change == 0:
                    return 0
                return 1 if sign * change > 0 else -1
        hues = named_hues(explanation)
        if hues is not None:
            p = _prop(ev, "hue")
            forward = _circular(p.start, hues[0]) + _circular(p.end, hues[1])
            backward = _circular(p.start, hues[1]) + _circular(p.end, hues[0])
            if forward != backward:
                return 1 if forward < backward else -1
        return 0


def judge_for(explainer: Explainer) -> Judge:
    """The explainer itself when it implements the extension, :class:`MeasureJudge` for the
    offline measure explainer, else a ConfigError saying what to implement."""
    if callable(getattr(explainer, "detect", None)) and callable(getattr(explainer, "direction", None)):
        return explainer  # type: ignore[return-value]
    if not explainer.is_mllm and getattr(explainer, "scheme", "") == "measure":
        return MeasureJudge()
    raise ConfigError(
        f"Explainer {explainer.uri!r} has no detect()/direction() methods, so the reference-free "
        "scores cannot run with it. Implement them (see lexflow/quality/judge.py and "
        "docs/quality.md) or skip them with --no-judge."
    )
