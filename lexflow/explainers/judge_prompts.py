"""The judge prompts (detection, direction) and how their answers are read, without I/O.

The quality suite's reference-free scores ask an explainer two questions about an explanation
(see lexflow/quality/judge.py):

- **detection**: here are N traversal grids (images 1..N, no value header); which one shows the
  change this explanation describes? Answer ``{"grid": <1..N>}``.
- **direction**: here is one grid whose columns may run either way; read left to right, does it
  change the way the explanation says the latent's increase does? Answer
  ``{"direction": "forward" | "reversed" | "none"}`` ("none": the explanation states no direction).

One template per task, tested as exact text. The explanation is provider text, so it goes into the
prompt quoted as a JSON string with control characters removed and its length capped: whatever it
says, it stays inside the quotes. Each prompt also carries the JSON schema of its answer
(:class:`JudgePrompt`), which the provider backends send as their own structured-output request
(OpenAI ``response_format``, a forced Anthropic tool, Gemini ``responseJsonSchema``, Ollama
``format``). Answers are still read defensively: a refusal, an empty or malformed answer, or a
grid number out of range raises :class:`JudgeAnswerRejected`, which the judge reports as
unavailable (scored as a miss), never as a right answer.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lexflow.explainers.answers import AnswerRejected, is_refusal
from lexflow.explainers.prompts import Prompt

MAX_EXPLANATION = 500  # characters of the explanation quoted in a judge prompt

GRIDS_INTRO = (
    "Images 1 to {n} are grids of images decoded by a generative model, one grid per latent "
    "variable. In every row of a grid, that grid's latent variable changes from one column to the "
    "next while everything else is held fixed; each row starts from a different random sample."
)
DETECT_TASK = (
    "This explanation describes what one of these latent variables controls: {explanation}\n"
    "Which grid shows the change the explanation describes?"
)
DETECT_FORMAT = (
    'Answer with one JSON object and nothing else: {{"grid": <the number of that grid, from 1 to {n}>}}'
)
GRID_INTRO = (
    "Image 1 is a grid of images decoded by a generative model. In every row one latent variable "
    "changes from one column to the next while everything else is held fixed; each row starts from "
    "a different random sample. The columns run either from the lowest value of the latent "
    "variable to the highest or from the highest to the lowest, the same way in every row."
)
DIRECTION_TASK = (
    "This explanation says what happens as the latent variable increases: {explanation}\n"
    "Read the rows from left to right. Do they change the way the explanation says the images "
    'change as the latent variable increases ("forward"), the opposite way ("reversed"), or does '
    'the explanation state no direction of change ("none")?'
)
DIRECTION_FORMAT = (
    'Answer with one JSON object and nothing else: {"direction": "forward" | "reversed" | "none"}'
)
DIRECTIONS: Mapping[str, int] = {"forward": 1, "reversed": -1, "none": 0}
SYNONYMS: Mapping[str, int] = {"reverse": -1, "backward": -1, "backwards": -1, "opposite": -1}


class JudgeAnswerRejected(AnswerRejected):
    """A judge answer that is empty, a refusal, malformed or out of range; ``str(exc)`` says which."""


@dataclass(frozen=True)
class JudgePrompt(Prompt):
    """A judge prompt: text and images (as :class:`Prompt`), plus what the answer must look like.

    Attributes:
        task: ``detect`` or ``direction``.
        schema: the JSON schema of the answer object (sent as the provider's structured-output
            request; the text states the same format for servers that ignore it).
    """

    task: str = ""
    schema: Mapping[str, Any] = field(default_factory=dict)


def printable(text: str) -> str:
    """``text`` without control or format characters (escapes, bidi overrides), whitespace collapsed."""
    kept = []
    for ch in text:
        kind = unicodedata.category(ch)
        if kind == "Cc" or kind[0] == "Z":
            kept.append(" ")
        elif kind[0] != "C":
            kept.append(ch)
    return " ".join("".join(kept).split())


def quoted(explanation: str) -> str:
    """The explanation as a JSON string literal: printable, at most MAX_EXPLANATION characters."""
    return json.dumps(printable(explanation or "")[:MAX_EXPLANATION], ensure_ascii=False)


def detection_schema(n: int) -> dict[str, Any]:
    return {"type": "object", "properties": {"grid": {"type": "integer", "minimum": 1, "maximum": n}},
            "required": ["grid"], "additionalProperties": False}


DIRECTION_SCHEMA: Mapping[str, Any] = {
    "type": "object", "properties": {"direction": {"type": "string", "enum": list(DIRECTIONS)}},
    "required": ["direction"], "additionalProperties": False,
}


def detection_prompt(explanation: str, grids: Sequence[bytes]) -> JudgePrompt:
    """Detection: the explanation and ``grids`` (PNG bytes, shown as images 1..N in this order)."""
    n = len(grids)
    text = "\n".join([GRIDS_INTRO.format(n=n), DETECT_TASK.format(explanation=quoted(explanation)),
                      DETECT_FORMAT.format(n=n)])
    return JudgePrompt(text, tuple(grids), task="detect", schema=detection_schema(n))


def direction_prompt(explanation: str, grid: bytes) -> JudgePrompt:
    """Direction: the explanation and one grid (PNG bytes) whose columns may be reversed."""
    text = "\n".join([GRID_INTRO, DIRECTION_TASK.format(explanation=quoted(explanation)),
                      DIRECTION_FORMAT])
    return JudgePrompt(text, (grid,), task="direction", schema=dict(DIRECTION_SCHEMA))


# --- reading the answers ---------------------------------------------------------------------


def excerpt(text: str, limit: int = 80) -> str:
    """A short, printable piece of provider text for a failure message."""
    flat = printable(text)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def first_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (code fences and prose around it are skipped)."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return {str(k).strip().lower(): v for k, v in value.items()}
    return None


def _checked(text: str | None) -> str:
    if text is None or not text.strip():
        raise JudgeAnswerRejected("empty answer")
    if is_refusal(text):
        raise JudgeAnswerRejected(f"refusal: {excerpt(text)}")
    return text


def read_detection(text: str | None, n: int) -> int:
    """The 0-based index of the grid the answer picks; raises :class:`JudgeAnswerRejected`.

    Reads ``{"grid": k}`` (k a number or "grid k"); without a JSON object, a free-text answer
    naming exactly one number ("Grid 3."). A number outside 1..n is rejected, not clipped.
    """
    text = _checked(text)
    obj = first_object(text)
    if obj is not None:
        value = obj.get("grid", obj.get("image", obj.get("answer")))
        if isinstance(value, bool) or value is None:
            raise JudgeAnswerRejected(f"no grid number in the answer: {excerpt(text)}")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        numbers = [value] if isinstance(value, int) else re.findall(r"\d+", str(value))
    else:
        numbers = re.findall(r"(?<![\w.-])\d+(?!\w|\.\d)", text)
    distinct = {int(x) for x in numbers}
    if len(distinct) != 1:
        raise JudgeAnswerRejected(f"expected one grid number from 1 to {n}; got: {excerpt(text)}")
    k = distinct.pop()
    if not 1 <= k <= n:
        raise JudgeAnswerRejected(f"grid {k} is not one of the {n} grids shown")
    return k - 1


def read_direction(text: str | None) -> int:
    """+1 (forward), -1 (reversed) or 0 (no direction stated); raises :class:`JudgeAnswerRejected`."""
    text = _checked(text)
    obj = first_object(text)
    if obj is not None:
        value = obj.get("direction")
    else:
        value = re.sub(r"[^a-z ]", " ", text.lower()).split()
        value = value[0] if len(value) == 1 else None
    if isinstance(value, int) and not isinstance(value, bool) and value in (-1, 0, 1):
        return value
    word = str(value).strip().lower() if isinstance(value, str) else ""
    if word in DIRECTIONS:
        return DIRECTIONS[word]
    if word in SYNONYMS:
        return SYNONYMS[word]
    raise JudgeAnswerRejected(f'expected "forward", "reversed" or "none"; got: {excerpt(text)}')
