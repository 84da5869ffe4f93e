"""The shared base of the multimodal-LLM explainers: concurrency, retries, cache, accounting.

A provider file (openai_api.py, anthropic_api.py, ...) only says how to open a client, how to send
one prompt with its images, and which environment variables hold its key and base URL. This base
does the rest, the same way for every provider:

- ``explain_many`` runs on asyncio in a worker thread (so it works from scripts and from inside a
  notebook's running loop alike), with ``concurrency`` calls in flight and ``samples`` answers per
  latent, sampling on (``temperature``, 1 by default) and a distinct seed per sample where the API
  takes one;
- each call has a ``timeout``; only transient failures are retried (429, honouring Retry-After;
  408/409/425 and 5xx; timeouts; connection errors), with jittered exponential backoff, at most
  ``max_attempts`` times; anything else (400/401/403, a malformed response, a refusal, an empty
  answer) is recorded for that sample as a failure, never as an explanation;
- answers are read with :mod:`lexflow.explainers.answers` and cached one by one with
  :mod:`lexflow.cache` as they arrive;
- tokens and cost are summed per latent (:mod:`lexflow.explainers.pricing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import random
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from lexflow.cache import AnswerCache, cache_key, image_digest
from lexflow.errors import ConfigError, ExplainerError, did_you_mean, require
from lexflow.explainers.answers import Answer, AnswerRejected, parse_answer
from lexflow.explainers.base import Explainer, ExplainRequest, ExplainResponse
from lexflow.explainers.calls import run_in_thread, sample_seed
from lexflow.explainers.faults import CallFailed, classify
from lexflow.explainers.grounding import contradictions, evidence_summary
from lexflow.explainers.judging import APIJudgeMixin
from lexflow.explainers.pricing import (
    ESTIMATED_OUTPUT_TOKENS,
    cost_usd,
    image_tokens,
    png_size,
    price_for,
    text_tokens,
)
from lexflow.explainers.prompts import Bias, Prompt, build_prompt, get_bias, read_biases
from lexflow.sanitize import clean

log = logging.getLogger("lexflow.explainers")
T = TypeVar("T")

PROMPT_VERSION = 1  # part of every cache key: bump when the prompt or answer reading changes
def coerce_option(default: Any, value: Any) -> Any:
    """An explainer option given as text (``-o key=value``, MLproject) turned into the type of its
    default; raises TypeError/ValueError when it does not convert."""
    if isinstance(default, bool):
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    return str(value)


@dataclass(frozen=True)
class MLLMOptions:
    """Options every MLLM explainer takes (the pipeline's, plus ``--explainer-option`` extras).

    Attributes:
        concurrency: calls in flight at once. timeout: seconds one call may take.
        cache: answer cache directory, ``none`` to disable, None for the default.
        grounding: put the measured evidence in the prompt and flag contradicting answers.
        seed: base of the per-sample seeds. temperature: sampling temperature (None: the API's).
        max_tokens: answer length limit. max_attempts: calls per sample, retries included.
        backoff, max_backoff: first retry delay and its cap, seconds (jittered, doubling).
        base_url: server to talk to (overrides the provider's environment variable).
        biases: a YAML file of extra biases this explainer may use (not registered
            process-wide). prompt_bias: use this bias's template instead of the request's.
        price_input, price_output: USD per million tokens, overriding the price table.
        dry_run: build without an API key (nothing will be sent).
        judge_temperature: sampling temperature of the quality suite's judge questions
            (lexflow.explainers.judging); 0 asks for the most likely answer.
    """

    concurrency: int = 8
    timeout: float = 60.0
    cache: str | None = None
    grounding: bool = False
    seed: int = 0
    temperature: float | None = 1.0
    max_tokens: int = 400
    max_attempts: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    base_url: str | None = None
    biases: str | None = None
    prompt_bias: str | None = None
    price_input: float | None = None
    price_output: float | None = None
    dry_run: bool = False
    judge_temperature: float = 0.0

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any], scheme: str) -> MLLMOptions:
        known = {f.name: f for f in fields(cls)}
        problems = [f"unknown option {k!r}" + did_you_mean(k, known) for k in options if k not in known]
        values: dict[str, Any] = {}
        for k, v in options.items():
            if k not in known or v is None:
                continue
            default = known[k].default
            if k in ("price_input", "price_output"):  # default None, but a number when given
                default = 0.0
            try:
                values[k] = coerce_option(default, v)
            except (TypeError, ValueError):
                problems.append(f"option {k!r} must be a {type(default).__name__}; got {v!r}")
        opts = cls(**values) if not problems else cls()
        for name in ("concurrency", "max_attempts", "max_tokens"):
            if getattr(opts, name) < 1:
                problems.append(f"option {name!r} must be >= 1; got {getattr(opts, name)!r}")
        for name in ("timeout",):
            if getattr(opts, name) <= 0:
                problems.append(f"option {name!r} must be > 0; got {getattr(opts, name)!r}")
        if opts.backoff < 0 or opts.max_backoff < 0:
            problems.append("options 'backoff' and 'max_backoff' must be >= 0")
        if opts.judge_temperature < 0:
            problems.append(f"option 'judge_temperature' must be >= 0; got {opts.judge_temperature!r}")
        if problems:
            raise ConfigError(f"Explainer {scheme}: " + "; ".join(problems) + ".")
        return opts


@dataclass(frozen=True)
class Reply:
    """What one provider call returned: the text, usage, and a provider-signalled refusal."""

    text: str | None
    input_tokens: int = 0
    output_tokens: int = 0
    refusal: str | None = None
    model: str = ""


@dataclass
class _Sample:
    answer: Answer | None = None
    failure: str = ""
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached: bool = False
    model: str = ""


@dataclass(frozen=True)
class CallPreview:
    """What a dry run would send for one latent (estimates: nothing is sent).

    Attributes:
        index, label: the latent. prompt: the exact prompt text.
        images: (width, height, bytes) of each image, in order.
        calls: calls needed (samples not in the cache). cached: samples found in the cache.
        input_tokens, output_tokens, cost_usd: estimated for ``calls`` calls.
    """

    index: int
    label: str
    prompt: str
    images: tuple[tuple[int, int, int], ...]
    calls: int
    cached: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    extra: dict[str, Any] = field(default_factory=dict)


class MLLMExplainer(APIJudgeMixin, Explainer):
    """Base of the MLLM explainers; subclasses implement the ``open_client``/``call`` hooks.

    Every one is also a judge for the quality suite (``detect``/``direction``, from
    :class:`~lexflow.explainers.judging.APIJudgeMixin`), through the same hooks.

    Attributes:
        model: the model name from the URI. base_url: the server, or None for the provider's.
        options: the validated :class:`MLLMOptions`. cache: the answer cache.
    """

    scheme: ClassVar[str]
    key_env: ClassVar[tuple[str, ...]] = ()  # the key is the first of these that is set
    base_url_env: ClassVar[str | None] = None
    sdk: ClassVar[tuple[str, str] | None] = None  # (module, extra) checked at from_uri time
    key_optional_with_base_url: ClassVar[bool] = False

    def __init__(self, model: str, options: MLLMOptions, *, api_key: str | None = None,
                 base_url: str | None = None) -> None:
        super().__init__(f"{self.scheme}:/{model}")
        self.model, self.options, self.base_url = model, options, base_url
        self.extra_biases: dict[str, Bias] = {}  # from options.biases (set by from_uri)
        self._api_key = api_key  # never logged, never in a cache key, never in a repr
        self.cache = AnswerCache.from_option(options.cache)
        custom = (options.price_input, options.price_output)
        table = price_for(self.scheme, model)
        self.prices = (custom[0] if custom[0] is not None else table[0],
                       custom[1] if custom[1] is not None else table[1])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r}, base_url={self.base_url!r})"

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def from_uri(cls, target: str | None, options: Mapping[str, Any]) -> MLLMExplainer:
        if not target:
            raise ConfigError(f"Explainer {cls.scheme!r} needs a model: use '{cls.scheme}:/<model>'.")
        opts = MLLMOptions.from_mapping(options, cls.scheme)
        if cls.sdk:
            require(cls.sdk[0], extra=cls.sdk[1], purpose=f"The {cls.scheme} explainer")
        base_url = opts.base_url or (os.environ.get(cls.base_url_env) if cls.base_url_env else None) or None
        api_key = next((os.environ[v] for v in cls.key_env if os.environ.get(v)), None)
        needs_key = cls.key_env and not (cls.key_optional_with_base_url and base_url)
        if needs_key and api_key is None and not opts.dry_run:
            either = " or ".join(cls.key_env)
            raise ConfigError(
                f"The {cls.scheme} explainer needs an API key: set the environment variable {either} "
                f"(keys are read only from the environment, never from options or files)."
            )
        extra = {b.name: b for b in read_biases(opts.biases)} if opts.biases else {}
        if opts.prompt_bias:
            get_bias(opts.prompt_bias, extra)  # fail now, naming the available biases
        explainer = cls(target, opts, api_key=api_key, base_url=base_url)
        explainer.extra_biases = extra  # this explainer's own (no process-wide registry)
        return explainer

    # --- provider hooks ---------------------------------------------------------------------
    async def open_client(self) -> Any:
        """A client bound to the running loop (one per explain_many call)."""
        raise NotImplementedError

    async def close_client(self, client: Any) -> None:
        close = getattr(client, "close", None) or getattr(client, "aclose", None)
        if close is not None:
            result = close()
            if asyncio.iscoroutine(result):
                await result

    async def call(self, client: Any, prompt: Prompt, *, seed: int) -> Reply:
        """Send one prompt (text and PNG images) and return the reply; raise on failure."""
        raise NotImplementedError

    async def model_identity(self, client: Any) -> str:
        """A fingerprint of the served weights, when the API exposes one (part of cache keys)."""
        return ""

    async def identity_or_blank(self, client: Any) -> str:
        """:meth:`model_identity` within the timeout, or "" (the fingerprint is optional; the
        calls themselves report real errors)."""
        try:
            return await asyncio.wait_for(self.model_identity(client), self.options.timeout)
        except Exception as exc:
            log.debug("%s: no model identity (%s)", self.uri, type(exc).__name__)
            return ""

    # --- prompts and keys -------------------------------------------------------------------
    def prompt(self, request: ExplainRequest) -> Prompt:
        bias = get_bias(self.options.prompt_bias or request.bias, self.extra_biases)
        summary = (evidence_summary(request.evidence, request.comparison_evidence)
                   if self.options.grounding else None)
        return build_prompt(request, bias=bias, grounding=summary)

    def key_for(self, prompt: Prompt, index: int, sample: int, identity: str) -> str:
        o = self.options
        return cache_key({
            "uri": self.uri, "base_url": self.base_url or "", "identity": identity,
            "prompt": prompt.text, "images": [image_digest(b) for b in prompt.images], "sample": sample,
            "seed": sample_seed(o.seed, index, sample), "temperature": o.temperature,
            "max_tokens": o.max_tokens, "version": PROMPT_VERSION,
        })

    def redact(self, text: str) -> str:
        """Provider text made safe (lexflow.sanitize): controls stripped, this explainer's key
        (at any length) and the environment's secrets replaced by ``***``."""
        return clean(text, (self._api_key,)) or ""

    def cleaned(self, reply: Reply) -> Reply:
        """``reply`` with every provider string (text, refusal, model) cleaned, before anything
        parses, caches, logs or writes it."""
        return Reply(
            text=None if reply.text is None else self.redact(reply.text),
            input_tokens=reply.input_tokens, output_tokens=reply.output_tokens,
            refusal=None if reply.refusal is None else self.redact(reply.refusal),
            model=self.redact(reply.model or ""),
        )

    def parse(self, text: str | None) -> Answer:
        """The answer in (cleaned) ``text``, its fields cleaned again: JSON escapes such as
        ``\\u0000`` or an escaped key only become characters when the JSON is read."""
        a = parse_answer(text)
        return Answer(self.redact(a.sentence), self.redact(a.label), self.redact(a.increases),
                      a.structured)

    # --- one call, with retries ---------------------------------------------------------------
    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.options.max_backoff)
        base = min(self.options.max_backoff, self.options.backoff * 2 ** (attempt - 1))
        return base * random.uniform(0.5, 1.0)

    async def _attempts(self, client: Any, sem: asyncio.Semaphore, prompt: Prompt, seed: int,
                        where: str) -> tuple[Reply | None, str, int]:
        """(reply, failure, calls): calls until a reply or a permanent failure or max_attempts."""
        failure, transient = "", False
        for attempt in range(1, self.options.max_attempts + 1):
            try:
                async with sem:
                    reply = await asyncio.wait_for(self.call(client, prompt, seed=seed),
                                                   timeout=self.options.timeout)
                return self.cleaned(reply), "", attempt
            except TimeoutError:  # asyncio.TimeoutError is TimeoutError since 3.11
                fault = CallFailed(f"timed out after {self.options.timeout:g} s", transient=True)
            except Exception as exc:  # provider errors of every SDK: sorted by classify()
                fault = classify(exc)
            failure, transient = self.redact(fault.message), fault.transient
            if not fault.transient or attempt == self.options.max_attempts:
                break
            wait = self.delay(attempt, fault.retry_after)
            log.info("%s: %s; retry %d in %.2f s", where, failure, attempt, wait)
            await asyncio.sleep(wait)
        return None, failure + (f" (gave up after {attempt} attempts)" if transient else ""), attempt

    async def _sample(self, client: Any, sem: asyncio.Semaphore, request: ExplainRequest,
                      prompt: Prompt, k: int, identity: str) -> _Sample:
        key = self.key_for(prompt, request.index, k, identity)
        hit = self.cache.get(key)
        if hit is not None:
            try:
                text = hit.get("text")  # a cache written by an older lexflow may hold raw text
                return _Sample(self.parse(None if text is None else self.redact(str(text))),
                               cached=True, model=self.redact(str(hit.get("model", ""))))
            except AnswerRejected:
                pass  # stored by an older reader; ask again
        seed = sample_seed(self.options.seed, request.index, k)
        where = f"{self.uri} latent {request.index} sample {k + 1}"
        reply, failure, calls = await self._attempts(client, sem, prompt, seed, where)
        if reply is None:
            return _Sample(failure=failure, calls=calls)
        out = _Sample(calls=calls, input_tokens=reply.input_tokens, output_tokens=reply.output_tokens,
                      model=reply.model)
        if reply.refusal:
            out.failure = f"refusal: {self.redact(reply.refusal)[:200]}"
            return out
        try:
            out.answer = self.parse(reply.text)
        except AnswerRejected as exc:
            out.failure = self.redact(str(exc))
            return out
        self.cache.put(key, {"text": reply.text, "model": reply.model, "uri": self.uri,
                             "latent": request.index, "sample": k, "seed": seed,
                             "input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens})
        return out

    async def _explain_one(self, client: Any, sem: asyncio.Semaphore, request: ExplainRequest,
                           identity: str) -> ExplainResponse:
        prompt = self.prompt(request)
        samples = await asyncio.gather(*(self._sample(client, sem, request, prompt, k, identity)
                                         for k in range(request.samples)))
        answers = tuple(s.answer.sentence if s.answer else "" for s in samples)
        tokens_in = sum(s.input_tokens for s in samples)
        tokens_out = sum(s.output_tokens for s in samples)
        details: dict[str, Any] = {
            "labels": [s.answer.label if s.answer else "" for s in samples],
            "increases": [s.answer.increases if s.answer else "" for s in samples],
            "structured": [bool(s.answer and s.answer.structured) for s in samples],
            "cached": sum(s.cached for s in samples),
            "models": sorted({s.model for s in samples if s.model}),
        }
        if self.options.grounding:
            found = contradictions(answers, request.evidence)
            details["contradictions"] = [asdict(c) for c in found]
            details["flags"] = [c.message() for c in found]
        return ExplainResponse(
            index=request.index, answers=answers,
            failures=tuple(f"sample {k + 1}: {s.failure}" for k, s in enumerate(samples) if s.failure),
            calls=sum(s.calls for s in samples), input_tokens=tokens_in, output_tokens=tokens_out,
            cost_usd=cost_usd(self.prices, tokens_in, tokens_out), details=details,
            images=sum(s.calls for s in samples) * len(prompt.images),
        )

    async def _explain_all(self, requests: Iterable[ExplainRequest],
                           emit: Callable[[ExplainResponse], None]) -> None:
        client = await self.open_client()
        try:
            identity = await self.identity_or_blank(client)
            sem = asyncio.Semaphore(self.options.concurrency)

            async def one(request: ExplainRequest) -> None:
                emit(await self._explain_one(client, sem, request, identity))

            if isinstance(requests, Sequence):
                await asyncio.gather(*(one(r) for r in requests))
                return
            # A stream (the engine still decoding): wait for each request off the loop, so the
            # calls in flight go on, and start its calls at once (the semaphore bounds them).
            it, tasks = iter(requests), []
            while (r := await asyncio.to_thread(next, it, None)) is not None:
                tasks.append(asyncio.ensure_future(one(r)))
            await asyncio.gather(*tasks)
        finally:
            await self.close_client(client)

    # --- the Explainer contract -------------------------------------------------------------
    def explain(self, request: ExplainRequest) -> ExplainResponse:
        return next(iter(self.explain_many([request])))

    def explain_many(
        self, requests: Iterable[ExplainRequest], *,
        on_done: Callable[[ExplainResponse], None] | None = None,
    ) -> Iterator[ExplainResponse]:
        """Answer every request concurrently; yields each latent as soon as its samples are in.

        Closing the iterator early (Ctrl-C, an error in ``on_done``) cancels the calls in flight;
        the answers already cached stay, so a rerun asks only for the rest.
        """
        if isinstance(requests, Sequence) and not requests:
            return
        results: queue.Queue[Any] = queue.Queue()
        done = object()
        state: dict[str, Any] = {}

        async def main() -> None:
            state["loop"], state["task"] = asyncio.get_running_loop(), asyncio.current_task()
            await self._explain_all(requests, results.put)

        def target() -> None:
            try:
                asyncio.run(main())
            except asyncio.CancelledError:
                pass
            except BaseException as exc:  # handed to the consuming thread
                results.put(exc)
            finally:
                results.put(done)

        worker = threading.Thread(target=target, name="lexflow-mllm", daemon=True)
        worker.start()
        try:
            while True:
                item = results.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise ExplainerError(f"{self.uri} failed: {self.redact(str(item))}") from item
                if on_done:
                    on_done(item)
                yield item
        finally:
            if worker.is_alive() and "loop" in state:
                with contextlib.suppress(RuntimeError):  # the loop already closed
                    state["loop"].call_soon_threadsafe(state["task"].cancel)
            worker.join(timeout=10)

    def ask_text(self, text: str) -> str:
        """One text-only call (used to let the model write a prompt); raises on failure."""

        async def main() -> str:
            client = await self.open_client()
            try:
                sem = asyncio.Semaphore(1)
                reply, failure, _ = await self._attempts(client, sem, Prompt(text, ()),
                                                         sample_seed(self.options.seed, 0, 0), self.uri)
            finally:
                await self.close_client(client)
            if reply is None or not (reply.text or "").strip():
                raise ExplainerError(f"{self.uri} did not answer: {failure or 'empty answer'}")
            return reply.text or ""

        return run_in_thread(main)

    # --- dry run ------------------------------------------------------------------------------
    def preview(self, request: ExplainRequest) -> CallPreview:
        """What :meth:`explain_many` would send for ``request``, and what it would cost."""
        prompt = self.prompt(request)
        sizes = tuple((*png_size(img), len(img)) for img in prompt.images)
        cached = sum(self.cache.contains(self.key_for(prompt, request.index, k, ""))
                     for k in range(request.samples))
        calls = request.samples - cached
        per_in = text_tokens(prompt.text) + sum(image_tokens(self.scheme, w, h) for w, h, _ in sizes)
        tin, tout = per_in * calls, ESTIMATED_OUTPUT_TOKENS * calls
        return CallPreview(request.index, request.label, prompt.text, sizes, calls, cached, tin, tout,
                           cost_usd(self.prices, tin, tout))
