"""Reading an MLLM's answer: the requested JSON, robustly, with a free-text fallback.

Models wrap JSON in code fences, add prose around it, leave trailing commas or use single quotes;
all of that is read. When no JSON object with a sentence is found, the first paragraph of the text
is the sentence. Refusals and empty answers are not explanations: :func:`parse_answer` raises
:class:`AnswerRejected`, which the MLLM base records as a failure for that sample (never retried,
never stored in the cache).
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any

MAX_SENTENCE = 500  # characters kept of one answer (tags and reports bound it again)

_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_PREFIX = re.compile(r"^\s*(?:answer|sentence|explanation)\s*:\s*", re.IGNORECASE)
REFUSAL_PATTERNS = tuple(re.compile(p, re.IGNORECASE) for p in (
    r"^\W*i\s*(?:'m|am)\s+sorry\b",
    r"\bi\s*(?:can(?:'|no)t|cannot|won'?t|will not|am unable to|'m unable to|am not able to)\s+"
    r"(?:help|assist|comply|provide|do that|answer|analy[sz]e|describe|process|identify)",
    r"^\W*(?:unfortunately,?\s+)?i\s*(?:can(?:'|no)t|cannot)\b",
    r"\bas an ai\b.*\b(?:cannot|can't|unable)\b",
    r"\bi\s*(?:'m| am)\s+not able to (?:view|see) (?:the )?images?\b",
))


class AnswerRejected(ValueError):
    """The answer is empty or a refusal; ``str(exc)`` says which, for the failures list."""


@dataclass(frozen=True)
class Answer:
    """One parsed answer.

    Attributes:
        sentence: the explanation used for uncertainty (one sentence).
        label: a short name, or "" when the model gave none.
        increases: what grows as the latent increases, or "".
        structured: whether it came from the requested JSON (False: free-text fallback).
    """

    sentence: str
    label: str = ""
    increases: str = ""
    structured: bool = True


def is_refusal(text: str) -> bool:
    head = " ".join(text.split())[:300]
    return any(p.search(head) for p in REFUSAL_PATTERNS)


def _json_candidates(text: str) -> list[str]:
    """Substrings that may hold the JSON object, most likely first."""
    out = [m.strip() for m in _FENCE.findall(text)]
    start, end = text.find("{"), text.rfind("}")
    if start >= 0 and end > start:
        out.append(text[start : end + 1])
    return out


def _load_object(candidate: str) -> dict[str, Any] | None:
    start, end = candidate.find("{"), candidate.rfind("}")
    if start < 0 or end <= start:
        return None
    body = candidate[start : end + 1]
    for attempt in (body, _TRAILING_COMMA.sub(r"\1", body)):
        try:
            value = json.loads(attempt)
        except ValueError:
            try:  # single quotes, True/False: a Python literal (never evaluated as code)
                value = ast.literal_eval(attempt)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                continue
        if isinstance(value, dict):
            return value
    return None


def _clean(value: Any) -> str:
    return " ".join(str(value).split())[:MAX_SENTENCE] if value is not None else ""


def _free_text(text: str) -> str:
    text = _FENCE.sub(lambda m: m.group(1), text).strip()
    for paragraph in re.split(r"\n\s*\n", text):
        line = _PREFIX.sub("", " ".join(paragraph.split())).strip().strip('"').strip()
        if line:
            return line[:MAX_SENTENCE]
    return ""


def parse_answer(text: str | None) -> Answer:
    """The answer in ``text``; raises :class:`AnswerRejected` for an empty answer or a refusal."""
    if text is None or not text.strip():
        raise AnswerRejected("empty answer")
    for candidate in _json_candidates(text):
        obj = _load_object(candidate)
        if obj is None:
            continue
        lowered = {str(k).strip().lower(): v for k, v in obj.items()}
        sentence = _clean(lowered.get("sentence") or lowered.get("explanation") or "")
        label = _clean(lowered.get("label") or "")
        increases = _clean(lowered.get("increases") or "")
        if not sentence and label:
            sentence = label
        if sentence:
            if is_refusal(sentence):
                raise AnswerRejected(f"refusal: {sentence[:120]}")
            return Answer(sentence, label, increases, True)
    if is_refusal(text):
        raise AnswerRejected(f"refusal: {_clean(text)[:120]}")
    sentence = _free_text(text)
    if not sentence or sentence in ("{}", "[]"):
        raise AnswerRejected("empty answer")
    return Answer(sentence, structured=False)
