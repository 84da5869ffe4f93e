"""Grounding: measured evidence in the prompt, and answers checked against it.

:func:`evidence_summary` turns :class:`lexflow.stages.evidence.Evidence` into a sentence for the prompt.
:func:`contradictions` flags an answer that names a property the measurements say did not move
(it says "colour" when only the position moved). The check is a small keyword vocabulary per
measured property, so it is deliberately conservative: a property counts as "did not move" only
when its score is below :data:`STILL_SCORE`, and only properties lexflow measures are checked
(an answer about a smile is never flagged; the measurements cannot see smiles).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from lexflow.stages.evidence import Evidence, PropertyChange

STILL_SCORE = 0.5  # below half a "notable" change, a property is taken as not moving

# What the prompt calls each measured property.
PROPERTY_WORDS = {
    "x": "horizontal position", "y": "vertical position", "scale": "size",
    "rotation": "orientation", "hue": "colour (hue)", "saturation": "colour saturation",
    "brightness": "brightness", "contrast": "contrast with the background",
    "shape": "roundness of the shape",
}
# Words that name each property in an answer (whole words; stems end with \w*).
VOCABULARY: dict[str, tuple[str, ...]] = {
    "x": ("left", "right", "horizontal\\w*", "sideways"),
    "y": ("upward\\w*", "downward\\w*", "vertical\\w*", "top", "bottom"),
    "scale": ("size", "sizes", "larger", "smaller", "bigger", "grows?", "growing", "shrinks?",
              "shrinking", "scale", "scales", "enlarg\\w*"),
    "rotation": ("rotat\\w*", "orientation", "tilt\\w*", "clockwise", "counter-clockwise", "spins?"),
    "hue": ("colou?rs?", "hue", "red", "orange", "yellow", "green", "cyan", "blue", "purple",
            "pink", "magenta", "violet"),
    "brightness": ("bright\\w*", "darker", "darken\\w*", "lighter", "dimmer"),
    "saturation": ("saturat\\w*", "vivid", "washed"),
    "contrast": ("contrast",),
    "shape": ("shape", "shapes", "round\\w*", "square\\w*", "angular", "elongat\\w*"),
}
_PATTERNS = {k: re.compile(r"\b(" + "|".join(v) + r")\b", re.IGNORECASE) for k, v in VOCABULARY.items()}
# Property groups an answer may blur: "lighter" can mean saturation, "colour" can mean brightness.
RELATED = {"hue": ("saturation", "brightness"), "brightness": ("contrast", "saturation", "hue"),
           "saturation": ("hue", "brightness"), "contrast": ("brightness",), "shape": ("scale",),
           "x": (), "y": ("scale",), "scale": ("shape",), "rotation": ("shape",)}


@dataclass(frozen=True)
class Contradiction:
    """An answer naming a property the measurements say did not move.

    Attributes:
        answer: index of the answer among the samples.
        property: the measured property (lexflow.stages.evidence.PROPERTIES).
        words: the words of the answer that name it.
        score: the property's measured score (< STILL_SCORE).
    """

    answer: int
    property: str
    words: tuple[str, ...]
    score: float

    def message(self) -> str:
        words = ", ".join(repr(w) for w in self.words)
        return (f"answer {self.answer + 1} names {PROPERTY_WORDS[self.property]} ({words}), but the "
                f"measured {PROPERTY_WORDS[self.property]} did not change (score {self.score:.2f})")


def _describe(p: PropertyChange) -> str:
    rows = len(p.per_row)
    agree = f"{round(p.agreement * rows)} of {rows} rows agree"
    return f"{PROPERTY_WORDS[p.name]} goes from {p.start:.3g} to {p.end:.3g} {p.unit} ({agree})"


def evidence_summary(evidence: Evidence, comparison: Evidence | None = None) -> str:
    """One or two sentences for the prompt: what clearly moves, and where the change is."""
    moved = evidence.moved()
    if moved:
        text = "; ".join(_describe(p) for p in moved[:3]) + "."
        still = [PROPERTY_WORDS[p.name] for p in evidence.properties if p.score < STILL_SCORE]
        if still:
            text += f" Unchanged: {', '.join(still)}."
    else:
        text = ("No simple property (position, size, orientation, colour, brightness, contrast, "
                "roundness) changes clearly; the change is in something else.")
    region = evidence.region
    where = "over the whole image" if region == "whole image" else f"in the {region}"
    text += f" The change is mostly {where}."
    if comparison is not None and moved:
        same = [p.name for p in comparison.moved()][:1] == [moved[0].name]
        text += (" The comparison rows change the same property." if same
                 else " The comparison rows change differently.")
    return text


def contradictions(answers: Sequence[str], evidence: Evidence) -> list[Contradiction]:
    """Answers that name a measured property which did not move, while another one did.

    Nothing is flagged when no property clearly moved: then the change is in something the
    measurements cannot see, and an answer naming colour may be right.
    """
    moved = {p.name for p in evidence.moved()}
    if not moved:
        return []
    scores = {p.name: p.score for p in evidence.properties}
    allowed = set(moved) | {r for m in moved for r in RELATED.get(m, ())}
    out = []
    for k, answer in enumerate(answers):
        if not answer:
            continue
        for prop, pattern in _PATTERNS.items():
            if prop in allowed or scores.get(prop, 0.0) >= STILL_SCORE:
                continue
            words = tuple(dict.fromkeys(m.group(0).lower() for m in pattern.finditer(answer)))
            if words:
                out.append(Contradiction(k, prop, words, scores.get(prop, 0.0)))
    return out
