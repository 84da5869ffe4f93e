"""The ``measure`` explainer: offline, deterministic, and not an MLLM.

It names what changes along a traversal from the measured evidence ("moves the object from left
to right"), one answer per base sample (row), plus one per disentanglement comparison row. The
uncertainty stage then compares those answers like sampled MLLM answers, so its certainty says how
well the base samples agree. It sees only simple properties (position, size, orientation, colour,
brightness, contrast, roundness); anything else it cannot name, and says nothing rather than guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lexflow.explainers.base import Explainer, ExplainRequest, ExplainResponse
from lexflow.stages.evidence import Evidence, PropertyChange

# Hue (turns) of colour names, for "from red to green".
HUE_NAMES = (
    (0.0, "red"), (0.083, "orange"), (0.167, "yellow"), (0.333, "green"),
    (0.5, "cyan"), (0.667, "blue"), (0.78, "purple"), (0.9, "pink"), (1.0, "red"),
)
SECOND_PROPERTY_RATIO = 0.6  # name a second property when it moves at least this much as the first


def hue_name(hue: float) -> str:
    hue = hue % 1.0
    return min(HUE_NAMES, key=lambda item: abs(item[0] - hue))[1]


def phrase(prop: PropertyChange, sign: float) -> str:
    """The words for one property moving with sign ``sign`` as the latent increases."""
    up = sign > 0
    name = prop.name
    if name == "x":
        return "moves the object from left to right" if up else "moves the object from right to left"
    if name == "y":
        return "moves the object from top to bottom" if up else "moves the object from bottom to top"
    if name == "scale":
        return "makes the object larger" if up else "makes the object smaller"
    if name == "rotation":
        return "rotates the object counter-clockwise" if up else "rotates the object clockwise"
    if name == "hue":
        a, b = hue_name(prop.start), hue_name(prop.end)
        return f"changes the object's colour from {a} to {b}" if a != b else "changes the object's colour"
    if name == "saturation":
        return "makes the colour more vivid" if up else "makes the colour more washed out"
    if name == "brightness":
        return "makes the object brighter" if up else "makes the object darker"
    if name == "contrast":
        return f"{'increases' if up else 'lowers'} the contrast with the background"
    if name == "shape":
        return "makes the object's shape rounder" if up else "makes the object's shape more angular"
    raise KeyError(name)


def row_answers(evidence: Evidence) -> list[str]:
    """One answer per row of a traversal: the properties that clearly move in that row."""
    props = [p for p in evidence.properties]
    scores = np.stack([p.row_scores() for p in props])  # [properties, rows]
    answers = []
    for r in range(scores.shape[1]):
        order = np.argsort(-np.abs(scores[:, r]))
        first = order[0]
        if abs(scores[first, r]) < 1.0:
            answers.append("")  # the row changes, but no simple property clearly moves
            continue
        parts = [phrase(props[first], scores[first, r])]
        second = order[1]
        if abs(scores[second, r]) >= max(1.0, SECOND_PROPERTY_RATIO * abs(scores[first, r])):
            parts.append(phrase(props[second], scores[second, r]))
        answers.append(" and ".join(parts))
    return answers


class MeasureExplainer(Explainer):
    """Names what changes from measurements of the decoded images; offline and deterministic."""

    scheme = "measure"
    is_mllm = False

    @classmethod
    def from_uri(cls, target: str | None, options: Mapping[str, Any]) -> MeasureExplainer:
        return cls("measure")

    def explain(self, request: ExplainRequest) -> ExplainResponse:
        answers = row_answers(request.evidence)
        if request.comparison_evidence is not None:
            answers += row_answers(request.comparison_evidence)
        return ExplainResponse(request.index, tuple(answers))
