"""The ``measure`` explainer: offline, deterministic, and not an MLLM.

It names what changes along a traversal from the measured evidence, one answer per base sample
(row), plus one per disentanglement comparison row. The uncertainty stage then compares those
answers like sampled MLLM answers, so its certainty says how well the base samples agree.

It reads the scene as a careful person would (lexflow.stages.scenes): *where* the change happens (the
wall, the floor, the background, the object, one of several objects named by its place), and
*what* changes there: position, size, orientation, colour, brightness, stroke thickness, shape
(rounder, more angular, more elongated; "turns the square into a circle" when the shape's name
changes), the number of objects, the tilt of the horizon. A row in which nothing it can measure
clearly moves gets no answer: it says nothing rather than guess, and a latent whose rows do not
agree ends as "No clear explanation".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lexflow.explainers.base import Explainer, ExplainRequest, ExplainResponse
from lexflow.stages.evidence import Evidence, PropertyChange, RegionChange
from lexflow.stages.scenes import HUE_NAMES, hue_name

__all__ = ["HUE_NAMES", "MeasureExplainer", "hue_name", "phrase", "row_answers", "scene_phrase"]

SECOND_PROPERTY_RATIO = 0.6  # name a second property when it moves at least this much as the first
NAMES_AGREE = 0.75  # colours are named when this share of the changing rows name the same ones
ONE_VERB = "moves the object "  # a diagonal move says it once: "moves the object from A and from B"


def phrase(prop: PropertyChange, sign: float) -> str:
    """The words for one single-blob property moving with sign ``sign`` as the latent increases
    (evidence saved before parts were measured)."""
    up = sign > 0
    name = prop.name
    if name == "hue":
        a, b = hue_name(prop.start), hue_name(prop.end)
        return f"changes the object's colour from {a} to {b}" if a != b else "changes the object's colour"
    if name == "contrast":
        return f"{'increases' if up else 'lowers'} the contrast with the background"
    if name == "shape":
        return "makes the object's shape rounder" if up else "makes the object's shape more angular"
    return _object_words(name, up)


def _object_words(name: str, up: bool) -> str:
    """Words for "the object" (the one object, or all objects together)."""
    words = {
        "x": ("moves the object from left to right", "moves the object from right to left"),
        "y": ("moves the object from top to bottom", "moves the object from bottom to top"),
        "scale": ("makes the object larger", "makes the object smaller"),
        "rotation": ("rotates the object counter-clockwise", "rotates the object clockwise"),
        "saturation": ("makes the colour more vivid", "makes the colour more washed out"),
        "brightness": ("makes the object brighter", "makes the object darker"),
        "corners": ("makes the object's shape more angular", "makes the object's shape rounder"),
        "aspect": ("makes the object's shape more elongated", "makes the object's shape less elongated"),
        "thickness": ("makes the strokes thicker", "makes the strokes thinner"),
        "outline": ("changes the object's shape", "changes the object's shape"),
    }
    return words[name][0 if up else 1]


def _article(noun: str) -> str:
    return "an" if noun[:1] in "aeiou" else "a"


PART_NAMES = {
    "wall": "the wall (upper background)",
    "floor": "the floor (lower part of the scene)",
    "background": "the background",
}


def _colour_change(a: str, b: str) -> str:
    return f"changes colour from {a} to {b}" if a and b and a != b else "changes colour"


def _agreed_names(change: RegionChange) -> tuple[str, str] | None:
    """The (start, end) colour names most rows that clearly change share, or None.

    Base samples start from different colours; naming each row's own colours would make rows
    that agree on *what* changes look as if they disagree, so colours are named only when at
    least NAMES_AGREE of the clearly changing rows name the same pair.
    """
    scores = np.abs(change.row_scores())
    pairs = [(a, b) for a, b, s in zip(change.start_names, change.end_names, scores, strict=True)
             if s >= 1.0]
    if not pairs:
        return None
    best = max(set(pairs), key=pairs.count)
    return best if pairs.count(best) >= NAMES_AGREE * len(pairs) else None


def scene_phrase(change: RegionChange, row: int, sign: float) -> str:
    """The words for one part's property moving with sign ``sign`` in row ``row``."""
    up = sign > 0
    prop, part = change.property, change.part
    a = change.start_names[row] if change.start_names else ""
    b = change.end_names[row] if change.end_names else ""
    if prop in ("hue", "colour"):
        a, b = _agreed_names(change) or ("", "")
    if change.role == "background":
        where = PART_NAMES[part]
        return f"{where} {_colour_change(a, b)}"
    if part == "scene":
        return f"rotates the whole scene {'counter-clockwise' if up else 'clockwise'} (the horizon tilts)"
    if part == "objects":
        return f"{'increases' if up else 'decreases'} the number of objects from {a} to {b}"
    if part == "object":
        if prop == "hue":
            names = f" from {a} to {b}" if a and a != b else ""
            return f"changes the object's colour{names}"
        if prop in ("corners", "aspect") and a and b and a != b:
            return f"turns the {a} into {_article(b)} {b}"
        return _object_words(prop, up)
    # One of several objects, by its place: "the left square moves up".
    noun = f"the {part.split()[0]} {a if a and a == b else 'object'}"
    if prop == "x":
        return f"{noun} moves {'to the right' if up else 'to the left'}"
    if prop == "y":
        return f"{noun} moves {'down' if up else 'up'}"
    if prop == "scale":
        return f"{noun} gets {'larger' if up else 'smaller'}"
    if prop == "hue":
        return f"{noun} {_colour_change(a, b)}"
    return f"{noun} gets {'brighter' if up else 'darker'}"


def _suppressed(change: RegionChange, clear: set[tuple[str, str]], several: bool) -> bool:
    """A change that a clearer one in the same row already explains."""
    part, prop = change.part, change.property
    if part == "object":
        if several:
            return True  # each object is named on its own
        if ("scene", "tilt") in clear and prop in ("x", "y", "rotation", "aspect", "corners"):
            return True  # the whole scene turns, carrying the object with it
        if ("objects", "count") in clear:
            return True  # objects come or go: the measurements of all of them together mean little
        if ("object", "thickness") in clear and prop in ("scale", "outline", "brightness", "rotation"):
            return True  # thicker strokes cover more area
        if ("object", "hue") in clear and prop in ("saturation", "brightness"):
            return True
    return False


def majority_signs(evidence: Evidence) -> dict[tuple[str, str], int]:
    """(part, property) -> the sign most rows that clearly move it share; 0 when no majority.

    A latent that controls a property moves it the same way from every base sample; one that
    moves it left in some rows and right in others does not control it, whatever each row shows.
    """
    out = {}
    for c in evidence.changes:
        if c.property in ("hue", "colour"):
            continue  # no up and down: rows may reach the same colour either way round
        signs = np.sign(c.row_scores()[np.abs(c.row_scores()) >= 1.0])
        up, down = int((signs > 0).sum()), int((signs < 0).sum())
        out[(c.part, c.property)] = 0 if up == down else (1 if up > down else -1)
    return out


def _scene_answers(changes: tuple[RegionChange, ...], rows: int,
                   signs: dict[tuple[str, str], int]) -> list[str]:
    if not changes:
        return [""] * rows
    scores = np.stack([c.row_scores() for c in changes])  # [changes, rows]
    # A row's move against the latent's majority direction is not the latent's effect.
    with_majority = np.array([[c.property in ("hue", "colour") or signs.get((c.part, c.property), 0) * v > 0
                               for v in row_scores]
                              for c, row_scores in zip(changes, scores, strict=True)])
    scores = np.where(with_majority, scores, 0.0)
    several = any(c.part.endswith(" object") for c in changes)
    answers = []
    for r in range(scores.shape[1]):
        clear = {(c.part, c.property) for c, s in zip(changes, scores[:, r], strict=True) if abs(s) >= 1.0}
        ranked = [k for k in np.argsort(-np.abs(scores[:, r]), kind="stable")
                  if abs(scores[k, r]) >= 1.0 and not _suppressed(changes[k], clear, several)]
        if not ranked:
            answers.append("")  # the row changes, but nothing it can measure clearly moves
            continue
        first = ranked[0]
        parts = [scene_phrase(changes[first], r, scores[first, r])]
        for k in ranked[1:2]:
            if abs(scores[k, r]) >= SECOND_PROPERTY_RATIO * abs(scores[first, r]):
                parts.append(scene_phrase(changes[k], r, scores[k, r]))
        if len(parts) == 2 and parts[1].startswith(ONE_VERB + "from") and parts[0].startswith(
                ONE_VERB + "from"):
            parts = [parts[0], parts[1].removeprefix(ONE_VERB)]  # diagonal: one verb
        answers.append(" and ".join(dict.fromkeys(parts)))
    return answers


def row_answers(evidence: Evidence, signs: dict[tuple[str, str], int] | None = None) -> list[str]:
    """One answer per row of a traversal: what clearly moves in that row, and where.

    ``signs``: the direction each part's property takes in most rows (:func:`majority_signs`,
    of ``evidence`` itself by default; the comparison rows use the main rows' directions).
    """
    if evidence.parts_measured:
        if signs is None:
            signs = majority_signs(evidence)
        return _scene_answers(evidence.changes, len(evidence.properties[0].per_row), signs)
    props = list(evidence.properties)
    scores = np.stack([p.row_scores() for p in props])  # [properties, rows]
    answers = []
    for r in range(scores.shape[1]):
        order = np.argsort(-np.abs(scores[:, r]))
        first = order[0]
        if abs(scores[first, r]) < 1.0:
            answers.append("")
            continue
        parts = [phrase(props[first], scores[first, r])]
        second = order[1]
        if abs(scores[second, r]) >= max(1.0, SECOND_PROPERTY_RATIO * abs(scores[first, r])):
            parts.append(phrase(props[second], scores[second, r]))
        answers.append(" and ".join(parts))
    return answers


class MeasureExplainer(Explainer):
    """Names what changes, and where, from measurements of the decoded images; offline and
    deterministic."""

    scheme = "measure"
    is_mllm = False

    @classmethod
    def from_uri(cls, target: str | None, options: Mapping[str, Any]) -> MeasureExplainer:
        return cls("measure")

    def explain(self, request: ExplainRequest) -> ExplainResponse:
        signs = majority_signs(request.evidence)
        answers = row_answers(request.evidence, signs)
        if request.comparison_evidence is not None:
            answers += row_answers(request.comparison_evidence, signs)
        return ExplainResponse(request.index, tuple(answers))
