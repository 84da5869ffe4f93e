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
- :class:`MeasureJudge` is the default for the offline ``measure`` explainer: it reads the claims
  the explanation makes in the measure explainer's own phrases (part of the scene, property,
  direction, named start and end: :func:`scene_claims`, whose table is built from
  lexflow.explainers.measure.scene_phrase) and compares them with each grid's measured scene
  changes (:attr:`Evidence.changes`), the same evidence the explanation came from. Its figures
  are :data:`SELF_CONSISTENCY`, not an independent judgement.

:func:`judge_for` finds an explainer's judge or says how to add one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lexflow.errors import ConfigError
from lexflow.explainers.base import Explainer, ExplainRequest
from lexflow.explainers.judging import FROM_GRIDS
from lexflow.stages.evidence import Evidence, RegionChange

SELF_CONSISTENCY = "self-consistency"
"""A judge that reads the evidence the explanation was written from: agreement with itself."""
UNSTATED = "not stated"
__all__ = ["FROM_GRIDS", "SELF_CONSISTENCY", "Judge", "MeasureJudge", "SceneClaim", "Tally", "judge_basis",
           "judge_for", "scene_claims"]


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


# Phrase -> (single-blob property of Evidence.properties, sign as the latent increases). Longer
# phrases first ("counter-clockwise" before "clockwise"); the words of the measure explainer's
# single-blob phrases (lexflow.explainers.measure.phrase) plus common synonyms, read where no
# scene claim is found (free text, evidence saved before the scene parts were measured).
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


# --- the scene claims of the measure explainer --------------------------------------------------

@dataclass(frozen=True)
class SceneClaim:
    """One thing an explanation says about a part of the scene (lexflow.stages.scenes).

    Attributes:
        part: "object", "wall", "floor", "background", "scene", "objects", "left object", ...
        properties: the part's properties the words may come from (the same words can name
            more than one: "turns the square into a circle" is corners or aspect).
        sign: +1 / -1 as the latent increases, 0 when the words state no direction.
        start, end: the named first and last state (colours, shapes, counts), "" when none.
    """

    part: str
    properties: tuple[str, ...]
    sign: int
    start: str = ""
    end: str = ""

    @property
    def named(self) -> bool:
        return bool(self.start and self.end and self.start != self.end)


_START, _END = "qqstartqq", "qqendqq"  # stand-ins for names; never words the explainer writes
_NAME = r"[a-z0-9]+"


def _template_regex(text: str) -> str:
    pattern = re.escape(text)
    pattern = pattern.replace(re.escape(f"a {_END}"), r"an?\ " + _END)  # "a square", "an ellipse"
    pattern = pattern.replace(_START, f"(?P<start>{_NAME})", 1).replace(_START, _NAME)
    return pattern.replace(_END, f"(?P<end>{_NAME})", 1)


@functools.lru_cache(maxsize=1)
def scene_templates() -> tuple[tuple[re.Pattern[str], SceneClaim], ...]:
    """Every phrase the measure explainer writes from scene changes, as (regex, claim), longest
    phrase first.

    Built by asking :func:`lexflow.explainers.measure.scene_phrase` itself for the words of every
    part, property and direction (names stood in for by placeholders), so the judge reads exactly
    what the explainer writes and cannot drift from it.
    """
    from lexflow.explainers.measure import ONE_VERB, PART_NAMES, scene_phrase
    from lexflow.stages.scenes import EACH_PROPERTIES, NOTABLE, OBJECT_PROPERTIES, PLACES, RegionChange

    def words(part: str, role: str, prop: str, sign: int, names: tuple[str, str]) -> str:
        change = RegionChange(part, role, prop, NOTABLE[prop][1], 0.0, 0.0,
                              (2.0 * sign * NOTABLE[prop][0],), 2.0, 1.0, (names[0],), (names[1],))
        return scene_phrase(change, 0, sign)

    named, unnamed, same = (_START, _END), ("", ""), (_START, _START)
    cases: list[tuple[str, str, str, int, tuple[str, str]]] = []
    for part in PART_NAMES:
        cases += [(part, "background", "colour", +1, n) for n in (named, unnamed)]
    cases += [("scene", "scene", "tilt", s, unnamed) for s in (1, -1)]
    cases += [("objects", "object", "count", s, named) for s in (1, -1)]
    for prop in OBJECT_PROPERTIES:
        for s in (1, -1):
            cases += [("object", "object", prop, s, n) for n in (named, unnamed)]
    places = sorted({p for names in PLACES.values() for p in names})
    for place in places:
        for prop in EACH_PROPERTIES:
            for s in (1, -1):
                cases += [(f"{place} object", "object", prop, s, n) for n in (named, unnamed, same)]
    found: dict[str, tuple[str, set[str], set[int]]] = {}
    for part, role, prop, sign, names in cases:
        text = words(part, role, prop, sign, names)
        texts = [text]
        if part == "object" and prop in ("x", "y") and text.startswith(ONE_VERB):
            texts.append(text.removeprefix(ONE_VERB))  # the second half of a diagonal move
        for t in texts:
            _, props, signs = found.setdefault(t, (part, set(), set()))
            props.add(prop)
            signs.add(sign)
    out = []
    for text, (part, props, signs) in sorted(found.items(), key=lambda kv: -len(kv[0])):
        # Words that read the same either way round ("changes colour") state no direction.
        sign = signs.pop() if len(signs) == 1 and part not in PART_NAMES else 0
        claim = SceneClaim(part, tuple(sorted(props)), sign)
        out.append((re.compile(_template_regex(text)), claim))
    return tuple(out)


def scene_claims(explanation: str) -> list[SceneClaim]:
    """The scene claims an explanation makes, in the order they appear (the measure explainer's
    phrases, read with :func:`scene_templates`; longer phrases win where two overlap)."""
    text = (explanation or "").lower()
    found: list[tuple[int, SceneClaim]] = []
    taken: list[tuple[int, int]] = []
    for pattern, claim in scene_templates():
        for m in pattern.finditer(text):
            start, end = m.span()
            if any(s < end and start < e for s, e in taken):
                continue
            taken.append((start, end))
            groups = m.groupdict()
            found.append((start, replace(claim, start=groups.get("start") or "",
                                         end=groups.get("end") or "")))
    return [c for _, c in sorted(found, key=lambda item: item[0])]


def _change(evidence: Evidence, claim: SceneClaim) -> RegionChange | None:
    """The part's change the claim is about (the strongest where the words name several);
    None when it did not move (changes below lexflow.stages.scenes.KEPT_SCORE are not kept)."""
    matching = [c for c in evidence.changes
                if c.part == claim.part and c.property in claim.properties]
    return max(matching, key=lambda c: c.score, default=None)


def _name_votes(change: RegionChange, claim: SceneClaim) -> int:
    """Rows that go from the claim's start to its end name, less those that go the other way."""
    pairs = list(zip(change.start_names, change.end_names, strict=False))
    return (sum(p == (claim.start, claim.end) for p in pairs)
            - sum(p == (claim.end, claim.start) for p in pairs))


def _claim_score(evidence: Evidence, claim: SceneClaim) -> float:
    """How strongly the evidence shows the claim, in notable units (lexflow.stages.scenes.NOTABLE):
    the signed median row score for a stated direction (the wrong way counts against), else the
    change's score, weighed down to half when no row names the stated start and end and to
    nothing when they all name them the other way round."""
    change = _change(evidence, claim)
    if change is None:
        return 0.0
    if claim.sign:
        return claim.sign * float(np.median(change.row_scores()))
    if claim.named and change.start_names:
        share = _name_votes(change, claim) / len(change.start_names)
        return change.score * (0.5 + 0.5 * share)
    return change.score


def _scene_direction(evidence: Evidence, claims_: list[SceneClaim]) -> int | None:
    """+1 / -1 from the first claim that states a direction or names a start and an end; 0 when
    that part did not move or the rows do not say; None when no claim states a direction."""
    from lexflow.stages.scenes import HUE_NAMES

    for claim in claims_:
        if not (claim.sign or claim.named):
            continue
        change = _change(evidence, claim)
        if change is None:
            return 0
        if claim.sign:
            m = float(np.median(change.row_scores()))
            return 0 if m == 0 else (1 if claim.sign * m > 0 else -1)
        votes = _name_votes(change, claim)
        if votes:
            return 1 if votes > 0 else -1
        hues = {name: h for h, name in HUE_NAMES if h < 1.0}
        if change.property in ("hue", "colour") and claim.start in hues and claim.end in hues:
            a, b = hues[claim.start], hues[claim.end]
            forward = _circular(change.start, a) + _circular(change.end, b)
            backward = _circular(change.start, b) + _circular(change.end, a)
            if forward != backward:
                return 1 if forward < backward else -1
        return 0
    return None


class MeasureJudge:
    """Judges with the measured evidence; the default for the ``measure`` explainer.

    It reads the explanation the way the measure explainer wrote it: the scene claims of
    :func:`scene_claims` (part, property, direction, named start and end), scored against each
    grid's :attr:`Evidence.changes`. Text with no such phrase (free text, evidence saved before
    the parts were measured) falls back to the single-blob properties of :func:`claims`.
    """

    judge_basis = SELF_CONSISTENCY

    def detect(self, explanation: str, candidates: Sequence[ExplainRequest]) -> int:
        """The candidate whose evidence shows the stated changes most, in the stated way.

        A claim with a direction scores its signed median row score (moving the wrong way counts
        against); one without scores the change's score (see :func:`_claim_score`); a
        candidate scores the mean over the claims. Inactive candidates are never picked.
        """
        scene = scene_claims(explanation)
        stated = claims(explanation)
        if not (scene or stated) or not candidates:
            return 0
        totals = []
        for cand in candidates:
            ev = cand.evidence
            if not ev.active:
                totals.append(-np.inf)
            elif scene and ev.parts_measured:
                totals.append(sum(_claim_score(ev, c) for c in scene) / len(scene))
            elif stated:
                totals.append(self._property_score(ev, stated))
            else:
                totals.append(0.0)
        return int(np.argmax(totals))

    @staticmethod
    def _property_score(ev: Evidence, stated: list[tuple[str, int]]) -> float:
        score = 0.0
        for prop, sign in stated:
            p = _prop(ev, prop)
            score += p.score if sign == 0 else sign * float(np.median(p.row_scores()))
        return score / len(stated)

    def direction(self, explanation: str, request: ExplainRequest) -> int:
        """+1 / -1 from the first stated direction (or the named start and end), else 0."""
        ev = request.evidence
        scene = scene_claims(explanation)
        if scene and ev.parts_measured:
            answer = _scene_direction(ev, scene)
            if answer is not None:
                return answer
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
