"""The judge extension (lexflow/quality/judge.py) for the multimodal explainers.

An MLLM judges by being asked: :func:`lexflow.explainers.judge_prompts.detection_prompt` shows it
the explanation and the candidate grids, :func:`~lexflow.explainers.judge_prompts.direction_prompt`
one grid that may run backwards, and it answers with a small JSON object. :class:`JudgeMixin` turns
those answers into the ``detect``/``direction`` results; a backend only says how to ask one prompt
(:meth:`JudgeMixin.ask_judge`):

- :class:`APIJudgeMixin` (every HTTP provider, through :class:`~lexflow.explainers.mllm.MLLMExplainer`)
  sends the prompt with the explainer's own client, retries, key redaction, answer cache and price
  table; only the sampling temperature differs (``judge_temperature``, 0 by default), since a judge
  should give its most likely answer rather than a sample.
- the local ``transformers:/`` explainer generates greedily (see transformers_local.py).

A judge question that gets no usable answer (a failed call, a refusal, a malformed or
out-of-range answer) returns None: the suite scores it as a miss and counts it, never as right.
Every question is kept as a :class:`Verdict` in ``judge_verdicts`` (usage, cost, why it failed).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast

from lexflow.explainers.judge_prompts import (
    JudgeAnswerRejected,
    JudgePrompt,
    detection_prompt,
    direction_prompt,
    excerpt,
    printable,
    read_detection,
    read_direction,
)

if TYPE_CHECKING:
    from lexflow.explainers.base import ExplainRequest


class _CallPath(Protocol):
    """What a judge needs of an MLLM explainer (lexflow.explainers.mllm.MLLMExplainer): its
    options, client, cache, prices and retried call. A protocol, so this module does not import
    the explainer it is mixed into."""

    uri: str
    options: Any
    cache: Any
    prices: Any

    def redact(self, text: str) -> str: ...
    async def open_client(self) -> Any: ...
    async def close_client(self, client: Any) -> None: ...
    async def identity_or_blank(self, client: Any) -> str: ...
    def key_for(self, prompt: Any, index: int, sample: int, identity: str) -> str: ...
    async def _attempts(self, client: Any, limit: asyncio.Semaphore, prompt: Any, seed: int,
                        what: str) -> tuple[Any, str, int]: ...

log = logging.getLogger("lexflow.explainers")
FROM_GRIDS = "from grids"
"""What a multimodal judge's figures are: read from the traversal images, not from the evidence
the explanation was written from (compare lexflow.quality.judge.SELF_CONSISTENCY)."""


@dataclass(frozen=True)
class Verdict:
    """One judge question and what came of it.

    Attributes:
        task: ``detect`` or ``direction``.
        answer: the picked grid (0-based) for detect; +1 / -1 / 0 for direction; None when the
            judge gave no usable answer.
        failure: why there is no answer ("" when there is one); key-redacted, printable.
        calls: provider calls made (retries included; 0 when the answer came from the cache).
        input_tokens, output_tokens: usage of those calls; cost_usd: their cost in US dollars.
        cached: the answer was read from the answer cache.
    """

    task: str
    answer: int | None
    failure: str = ""
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cached: bool = False


Reader = Callable[[str | None], int]


class JudgeMixin:
    """``detect`` and ``direction`` for an explainer that can answer a :class:`JudgePrompt`."""

    judge_basis: ClassVar[str] = FROM_GRIDS
    uri: str
    _judge_verdicts: list[Verdict]

    def ask_judge(self, prompt: JudgePrompt, read: Reader) -> Verdict:
        """Ask ``prompt`` once and read the answer with ``read``; never raises for a bad answer."""
        raise NotImplementedError

    def redact(self, text: str) -> str:
        return text

    @property
    def judge_verdicts(self) -> list[Verdict]:
        """Every judge question asked so far, in order."""
        if not hasattr(self, "_judge_verdicts"):
            self._judge_verdicts = []
        return self._judge_verdicts

    def _judged(self, prompt: JudgePrompt, read: Reader) -> int | None:
        verdict = self.ask_judge(prompt, read)
        self.judge_verdicts.append(verdict)
        if verdict.answer is None:
            log.warning("%s: the %s judge gave no usable answer (%s); scored as a miss", self.uri,
                        verdict.task, verdict.failure)
        return verdict.answer

    def detect(self, explanation: str, candidates: Sequence[ExplainRequest]) -> int | None:
        """Index of the candidate grid the explanation describes, or None when the judge failed."""
        if not candidates:
            return None
        if len(candidates) == 1:
            return 0
        n = len(candidates)
        prompt = detection_prompt(self.redact(explanation), [c.grid_png for c in candidates])
        return self._judged(prompt, lambda text: read_detection(text, n))

    def direction(self, explanation: str, request: ExplainRequest) -> int | None:
        """+1 / -1 / 0 (no direction stated) for the grid as shown, or None when the judge failed."""
        prompt = direction_prompt(self.redact(explanation), request.grid_png)
        return self._judged(prompt, read_direction)


def read_reply(explainer: Any, prompt: JudgePrompt, read: Reader, text: str | None,
               refusal: str | None = None, **usage: Any) -> Verdict:
    """A :class:`Verdict` from one answer: refusals and rejected answers become failures."""
    if refusal:
        return Verdict(prompt.task, None, f"refusal: {excerpt(explainer.redact(refusal))}", **usage)
    try:
        return Verdict(prompt.task, read(text), **usage)
    except JudgeAnswerRejected as exc:
        return Verdict(prompt.task, None, printable(explainer.redact(str(exc))), **usage)


class APIJudgeMixin(JudgeMixin):
    """Judge questions through an MLLM explainer's own call path (mixed into MLLMExplainer)."""

    _judge_twin: _CallPath

    def judge_explainer(self) -> _CallPath:
        """This explainer with the judge's temperature (same client, key, cache and prices)."""
        if not hasattr(self, "_judge_twin"):
            o = cast(_CallPath, self).options
            twin = cast(_CallPath, copy.copy(self))
            twin.options = replace(o, temperature=None if o.temperature is None else o.judge_temperature)
            self._judge_twin = twin
        return self._judge_twin

    def ask_judge(self, prompt: JudgePrompt, read: Reader) -> Verdict:
        from lexflow.explainers.calls import run_in_thread

        try:
            return run_in_thread(lambda: self._ask_judge(prompt, read))
        except Exception as exc:  # a client that cannot open, an SDK surprise: this question only
            why = printable(self.redact(f"{type(exc).__name__}: {exc}"))[:300]
            return Verdict(prompt.task, None, why)

    async def _ask_judge(self, prompt: JudgePrompt, read: Reader) -> Verdict:
        from lexflow.explainers.calls import sample_seed
        from lexflow.explainers.pricing import cost_usd

        judge = self.judge_explainer()
        client = await judge.open_client()
        try:
            identity = await judge.identity_or_blank(client)
            key = judge.key_for(prompt, 0, 0, identity)
            hit = judge.cache.get(key)
            if hit is not None:
                cached = read_reply(self, prompt, read, hit.get("text"), cached=True)
                if cached.answer is not None:
                    return cached
            reply, failure, calls = await judge._attempts(
                client, asyncio.Semaphore(1), prompt, sample_seed(judge.options.seed, 0, 0),
                f"{self.uri} {prompt.task} judge")
        finally:
            await judge.close_client(client)
        if reply is None:
            return Verdict(prompt.task, None, printable(failure), calls=calls)
        usage = {"calls": calls, "input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens,
                 "cost_usd": cost_usd(judge.prices, reply.input_tokens, reply.output_tokens)}
        verdict = read_reply(self, prompt, read, reply.text, reply.refusal, **usage)
        if verdict.answer is not None:
            judge.cache.put(key, {"text": self.redact(reply.text or ""), "task": prompt.task,
                                  "model": reply.model, "uri": self.uri})
        return verdict
