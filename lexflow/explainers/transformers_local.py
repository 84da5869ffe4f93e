"""``transformers:/<local dir>``: a vision-language model loaded from disk with transformers.

For explaining latents without sending images anywhere: any image-text-to-text model that
``AutoProcessor`` + ``AutoModelForImageTextToText`` load (LLaVA, Idefics3, Qwen2-VL, PaliGemma,
...) saved in a local directory. Nothing is downloaded (``local_files_only``).

- The prompt is the same per-bias prompt the API explainers send (:mod:`lexflow.explainers.prompts`),
  with the traversal grid (and the comparison rows for disentanglement) as the images, wrapped in
  the processor's chat template when it has one.
- Sampling is on; ``samples`` answers per latent come from ``num_return_sequences`` in batches of
  ``sample_batch``, with the torch generator seeded per latent, so reruns give the same answers.
- Answers are read like the API explainers' (:mod:`lexflow.explainers.answers`): an empty answer
  or a refusal is recorded as a failure for that sample, never as an explanation.
- It is also a judge for the quality suite (``detect``/``direction``: lexflow.explainers.judging):
  the judge prompt and its grids go through the same processor, answered greedily (no sampling).
- The device is ``auto`` (CUDA, then MPS, then CPU) unless the option ``device`` names one; on a
  GPU the weights load in bfloat16 (float16 where bfloat16 is unsupported).

The URI's path: ``transformers:/models/llava`` is tried as ``models/llava`` (relative to the
working directory), then as ``/models/llava``; ``transformers:///abs/dir`` is always absolute.
- Speed: up to ``batch_size`` latents' prompts go through one ``generate`` call (left-padded,
  ``samples`` sequences each, the generator seeded from the batch's first latent); with
  ``batch_size=1`` (or a single request) each latent is answered alone as before.
- Answers go to the same on-disk cache as the API explainers' (:mod:`lexflow.cache`, option
  ``cache``), one entry per latent, keyed by a fingerprint of the model directory's files (names,
  sizes and contents), the prompt, its images and the sampling options; a rerun with nothing
  changed generates nothing. Responses with a failure are not stored.
``concurrency`` and ``timeout`` are accepted for a uniform command line and ignored.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

from lexflow.cache import AnswerCache, cache_key, image_digest
from lexflow.errors import ConfigError, ExplainerError, did_you_mean, require
from lexflow.explainers.answers import AnswerRejected, parse_answer
from lexflow.explainers.base import Explainer, ExplainRequest, ExplainResponse
from lexflow.explainers.judge_prompts import JudgePrompt
from lexflow.explainers.judging import JudgeMixin, Reader, Verdict, read_reply
from lexflow.explainers.mllm import coerce_option
from lexflow.explainers.prompts import Bias, Prompt, build_prompt, get_bias, read_biases

EXTRA = "transformers"
JUDGE_NEW_TOKENS = 24  # a judge answer is a short JSON object
IGNORED_OPTIONS = ("concurrency", "timeout")
CACHE_VERSION = 1  # bump when what a cached local answer means changes


@dataclass(frozen=True)
class TransformersOptions:
    """Options of the local explainer (``--explainer-option key=value``).

    Attributes:
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        dtype: ``auto`` (bfloat16/float16 on a GPU, float32 on CPU), ``float32``, ``bfloat16``,
            ``float16``.
        seed: base of the per-latent generator seed.
        temperature, top_p: sampling parameters (sampling is always on: the method needs
            differing answers). max_new_tokens: answer length limit in tokens.
        sample_batch: sequences generated per ``generate`` call for one latent alone (lower
            it if memory is short).
        batch_size: latents whose prompts share one ``generate`` call (1 = one at a time).
        cache: the answer cache directory; ``none`` disables it; None = the default directory.
        grounding: put the measured evidence in the prompt.
        biases: a YAML file of extra biases this explainer may use (not registered
            process-wide); prompt_bias: use this bias's template.
    """

    device: str = "auto"
    dtype: str = "auto"
    seed: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 120
    sample_batch: int = 5
    grounding: bool = False
    biases: str | None = None
    prompt_bias: str | None = None
    batch_size: int = 8
    cache: str | None = None

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> TransformersOptions:
        known = {f.name: f for f in fields(cls)}
        problems: list[str] = []
        values: dict[str, Any] = {}
        for k, v in options.items():
            if k in IGNORED_OPTIONS:
                continue
            if k not in known:
                problems.append(f"unknown option {k!r}" + did_you_mean(k, known))
                continue
            if v is None:
                continue
            default = known[k].default
            try:
                values[k] = coerce_option(default, v)
            except (TypeError, ValueError):
                problems.append(f"option {k!r} must be a {type(default).__name__}; got {v!r}")
        opts = cls(**values)
        if opts.max_new_tokens < 1 or opts.sample_batch < 1 or opts.batch_size < 1:
            problems.append("options 'max_new_tokens', 'sample_batch' and 'batch_size' must be >= 1")
        if not opts.temperature > 0 or not 0 < opts.top_p <= 1:
            problems.append("option 'temperature' must be > 0 and 'top_p' in (0, 1]")
        if opts.dtype not in ("auto", "float32", "bfloat16", "float16"):
            problems.append(f"option 'dtype' must be auto, float32, bfloat16 or float16; got {opts.dtype!r}")
        dev = opts.device
        if dev not in ("auto", "cpu", "cuda", "mps") and not (dev.startswith("cuda:") and dev[5:].isdigit()):
            problems.append(f"option 'device' must be auto, cpu, cuda, cuda:N or mps; got {dev!r}")
        if problems:
            raise ConfigError("Explainer transformers: " + "; ".join(problems) + ".")
        return opts


def resolve_model_dir(target: str) -> Path:
    """The local directory a ``transformers:/<dir>`` URI names, or a ConfigError naming it."""
    raw = os.path.expanduser(target)
    tried = [raw] if os.path.isabs(raw) else [raw, "/" + raw]
    for candidate in tried:
        path = Path(candidate)
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise ConfigError(
                    f"Explainer transformers:/{target}: {str(path)!r} holds no config.json, so it is "
                    "not a saved transformers model (save one with model.save_pretrained and "
                    "processor.save_pretrained)."
                )
            return path.resolve()
    raise ConfigError(
        f"Explainer transformers:/{target}: no model directory at {' or '.join(repr(t) for t in tried)}. "
        "Give the directory of a vision-language model saved with save_pretrained "
        "(use transformers:///abs/path for an absolute path)."
    )


def pick_device(name: str) -> str:
    """``auto`` -> cuda when present, then mps, else cpu."""
    if name != "auto":
        return name
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


def _torch_dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device == "mps" else torch.float32
    return getattr(torch, name)


def read_answers(texts: list[str]) -> tuple[list[str], list[str]]:
    """Generated texts -> (answers with "" for rejected ones, why each rejected one failed)."""
    answers, failures = [], []
    for text in texts:
        try:
            answers.append(parse_answer(text).sentence)
        except AnswerRejected as exc:
            answers.append("")
            failures.append(str(exc))
    return answers, failures


class TransformersExplainer(JudgeMixin, Explainer):
    """Explains latents with a local vision-language model; loads it on first use.

    Attributes:
        model_dir: the resolved model directory. options: the validated options.
        device: where the model runs (resolved from ``auto``).
    """

    scheme: ClassVar[str] = "transformers"
    is_mllm: ClassVar[bool] = True

    def __init__(self, model_dir: Path, options: TransformersOptions, *, uri: str | None = None) -> None:
        super().__init__(uri or f"transformers:/{model_dir}")
        self.model_dir, self.options = model_dir, options
        self.extra_biases: dict[str, Bias] = {}  # from options.biases (set by from_uri)
        self.device = pick_device(options.device)
        self._model: Any = None
        self._processor: Any = None
        self._lock = threading.Lock()
        self.cache = AnswerCache.from_option(options.cache)
        self._fingerprint: str | None = None

    def __repr__(self) -> str:
        return f"TransformersExplainer({str(self.model_dir)!r}, device={self.device!r})"

    @classmethod
    def from_uri(cls, target: str | None, options: Mapping[str, Any]) -> TransformersExplainer:
        if not target:
            raise ConfigError("Explainer 'transformers' needs a model directory: transformers:/<dir>.")
        opts = TransformersOptions.from_mapping(options)
        model_dir = resolve_model_dir(target)
        transformers = require("transformers", extra=EXTRA, purpose="The transformers explainer")
        require("torch", extra=EXTRA, purpose="The transformers explainer")
        try:  # cheap: reads config.json only, so an unknown architecture fails before decoding
            transformers.AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"Explainer transformers:/{target}: cannot read {model_dir}: {exc}") from exc
        extra = {b.name: b for b in read_biases(opts.biases)} if opts.biases else {}
        if opts.prompt_bias:
            get_bias(opts.prompt_bias, extra)  # fail now, naming the available biases
        explainer = cls(model_dir, opts, uri=f"transformers:/{target}")
        explainer.extra_biases = extra  # this explainer's own (no process-wide registry)
        return explainer

    # --- loading ------------------------------------------------------------------------------
    def load(self) -> tuple[Any, Any]:
        """(processor, model), loaded once; the weights stay on ``self.device``."""
        with self._lock:
            if self._model is None:
                import transformers

                path = str(self.model_dir)
                try:
                    self._processor = transformers.AutoProcessor.from_pretrained(
                        path, local_files_only=True)
                    from packaging.version import Version

                    # transformers 4.56 renamed torch_dtype to dtype
                    dtype_kw = ("dtype" if Version(transformers.__version__) >= Version("4.56")
                                else "torch_dtype")
                    model: Any = transformers.AutoModelForImageTextToText.from_pretrained(
                        path, local_files_only=True,
                        **{dtype_kw: _torch_dtype(self.options.dtype, self.device)})
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    raise ExplainerError(
                        f"{self.uri}: could not load a vision-language model and its processor "
                        f"from {path}: {exc}"
                    ) from exc
                model.to(self.device)
                self._model = model.eval()
            return self._processor, self._model

    # --- one latent -----------------------------------------------------------------------------
    def prompt(self, request: ExplainRequest) -> Prompt:
        """The per-bias prompt (pure: see lexflow.explainers.prompts)."""
        bias = (get_bias(self.options.prompt_bias, self.extra_biases)
                if self.options.prompt_bias else None)
        grounding = None
        if self.options.grounding:
            from lexflow.explainers.grounding import evidence_summary

            grounding = evidence_summary(request.evidence, request.comparison_evidence)
        return build_prompt(request, bias=bias, grounding=grounding)

    def model_inputs(self, prompt: Prompt, *, text_only: bool = False) -> Any:
        """The processor's tensors for one prompt: chat template (if any), text and images
        (``text_only``: the templated text and the images, for a batch to process together)."""
        from PIL import Image

        processor, _ = self.load()
        images = [Image.open(io.BytesIO(png)).convert("RGB") for png in prompt.images]
        if getattr(processor, "chat_template", None):
            content: list[dict[str, Any]] = [{"type": "image"} for _ in images]
            content.append({"type": "text", "text": prompt.text})
            text = processor.apply_chat_template([{"role": "user", "content": content}],
                                                 add_generation_prompt=True)
        else:
            token = getattr(processor, "image_token", None) or "<image>"
            text = "".join(f"{token}\n" for _ in images) + prompt.text
        if text_only:
            return text, images
        return processor(text=text, images=images, return_tensors="pt")

    def explain(self, request: ExplainRequest) -> ExplainResponse:
        import torch

        from lexflow.explainers.calls import sample_seed

        processor, model = self.load()
        inputs = self.model_inputs(self.prompt(request)).to(self.device)
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        prompt_len = int(inputs["input_ids"].shape[1])
        generator_seed = sample_seed(self.options.seed, request.index, 0)
        texts: list[str] = []
        failures: list[str] = []
        calls = output_tokens = 0
        pad = getattr(getattr(processor, "tokenizer", processor), "pad_token_id", None)
        while len(texts) + len(failures) < request.samples:
            n = min(self.options.sample_batch, request.samples - len(texts) - len(failures))
            torch.manual_seed(generator_seed + calls)
            calls += 1
            try:
                with torch.inference_mode():
                    out = model.generate(
                        **inputs, do_sample=True, temperature=self.options.temperature,
                        top_p=self.options.top_p, max_new_tokens=self.options.max_new_tokens,
                        num_return_sequences=n,
                    )
            except (RuntimeError, ValueError) as exc:  # out of memory, a model that cannot generate
                failures += [f"generation failed: {type(exc).__name__}: {exc}"[:300]] * n
                continue
            new = out[:, prompt_len:]
            output_tokens += int((new != pad).sum()) if pad is not None else int(new.numel())
            texts += processor.batch_decode(new, skip_special_tokens=True)
        answers, rejected = read_answers(texts)
        answers += [""] * (request.samples - len(answers))
        return ExplainResponse(
            index=request.index, answers=tuple(answers), failures=tuple(failures + rejected),
            calls=calls, input_tokens=prompt_len * calls, output_tokens=output_tokens, cost_usd=0.0,
            details={"model_dir": str(self.model_dir), "device": self.device},
        )

    # --- many latents: the cache, then batched generation -------------------------------------
    def fingerprint(self) -> str:
        """A hash of the model directory's files (relative names, sizes, contents), computed once:
        a retrained or replaced model never reads the old model's cached answers."""
        if self._fingerprint is None:
            import hashlib

            h = hashlib.sha256()
            for f in sorted(p for p in self.model_dir.rglob("*") if p.is_file()):
                h.update(f"{f.relative_to(self.model_dir)}\0{f.stat().st_size}\0".encode())
                with open(f, "rb") as fh:
                    h.update(hashlib.file_digest(fh, "sha256").digest())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def key_for(self, request: ExplainRequest, prompt: Prompt) -> str:
        o = self.options
        return cache_key({
            "scheme": self.scheme, "model": self.fingerprint(), "prompt": prompt.text,
            "images": [image_digest(b) for b in prompt.images], "samples": request.samples,
            "index": request.index,
            "seed": o.seed, "temperature": o.temperature, "top_p": o.top_p,
            "max_new_tokens": o.max_new_tokens, "dtype": o.dtype, "version": CACHE_VERSION,
        })

    def explain_many(
        self, requests: Iterable[ExplainRequest], *,
        on_done: Callable[[ExplainResponse], None] | None = None,
    ) -> Iterator[ExplainResponse]:
        """Cached latents first-hand, the rest ``batch_size`` prompts per ``generate`` call."""
        pending: list[tuple[ExplainRequest, str | None]] = []

        def answer(batch: list[tuple[ExplainRequest, str | None]]) -> list[ExplainResponse]:
            reqs = [r for r, _ in batch]
            out = [self.explain(reqs[0])] if len(reqs) == 1 else self.explain_batch(reqs)
            for resp, (_, key) in zip(out, batch, strict=True):
                if key and not resp.failures:
                    self.cache.put(key, {"answers": list(resp.answers), "calls": resp.calls,
                                         "input_tokens": resp.input_tokens,
                                         "output_tokens": resp.output_tokens})
            return out

        for request in requests:
            key = self.key_for(request, self.prompt(request)) if self.cache.enabled else None
            hit = self.cache.get(key) if key else None
            if hit is not None:
                resp = ExplainResponse(index=request.index, answers=tuple(hit["answers"]),
                                       details={"model_dir": str(self.model_dir), "cached": True})
                if on_done:
                    on_done(resp)
                yield resp
                continue
            pending.append((request, key))
            if len(pending) >= self.options.batch_size:
                for resp in answer(pending):
                    if on_done:
                        on_done(resp)
                    yield resp
                pending = []
        if pending:
            for resp in answer(pending):
                if on_done:
                    on_done(resp)
                yield resp

    def explain_batch(self, requests: list[ExplainRequest]) -> list[ExplainResponse]:
        """Several latents in one ``generate`` call: prompts left-padded into one batch,
        ``max(samples)`` sequences each; a failed call fails every latent in it."""
        import torch

        from lexflow.explainers.mllm import sample_seed

        processor, model = self.load()
        tokenizer = getattr(processor, "tokenizer", processor)
        texts, images = [], []
        for r in requests:
            one = self.model_inputs(self.prompt(r), text_only=True)
            texts.append(one[0])
            images += one[1]
        n = max(r.samples for r in requests)
        side = getattr(tokenizer, "padding_side", "right")
        try:
            tokenizer.padding_side = "left"  # generation continues every prompt at the end
            inputs = processor(text=texts, images=images, return_tensors="pt",
                               padding=True).to(self.device)
        finally:
            tokenizer.padding_side = side
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        prompt_len = int(inputs["input_ids"].shape[1])
        torch.manual_seed(sample_seed(self.options.seed, requests[0].index, 0))
        details = {"model_dir": str(self.model_dir), "device": self.device,
                   "batch": len(requests)}
        try:
            with torch.inference_mode():
                out = model.generate(
                    **inputs, do_sample=True, temperature=self.options.temperature,
                    top_p=self.options.top_p, max_new_tokens=self.options.max_new_tokens,
                    num_return_sequences=n)
        except (RuntimeError, ValueError) as exc:
            failure = f"generation failed: {type(exc).__name__}: {exc}"[:300]
            return [ExplainResponse(index=r.index, answers=("",) * r.samples,
                                    failures=(failure,) * r.samples, calls=1,
                                    details=details) for r in requests]
        pad = getattr(tokenizer, "pad_token_id", None)
        decoded = processor.batch_decode(out[:, prompt_len:], skip_special_tokens=True)
        responses = []
        for k, r in enumerate(requests):
            new = out[k * n : k * n + r.samples, prompt_len:]
            answers, rejected = read_answers(decoded[k * n : k * n + r.samples])
            answers += [""] * (r.samples - len(answers))
            responses.append(ExplainResponse(
                index=r.index, answers=tuple(answers), failures=tuple(rejected), calls=1,
                input_tokens=int(inputs["attention_mask"][k].sum()),
                output_tokens=int((new != pad).sum()) if pad is not None else int(new.numel()),
                cost_usd=0.0, details=details))
        return responses

    # --- the judge extension (lexflow.explainers.judging) ------------------------------------
    def ask_judge(self, prompt: JudgePrompt, read: Reader) -> Verdict:
        """One greedy generation for a judge prompt; a failed generation is a failed verdict."""
        import torch

        processor, model = self.load()
        prompt_len = 0
        try:  # several images may not fit the model's processor or context: this question fails
            inputs = self.model_inputs(prompt).to(self.device)
            if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
                inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
            prompt_len = int(inputs["input_ids"].shape[1])
            with torch.inference_mode():
                out = model.generate(**inputs, do_sample=False, max_new_tokens=JUDGE_NEW_TOKENS)
        except (RuntimeError, ValueError, TypeError) as exc:
            return Verdict(prompt.task, None, f"generation failed: {type(exc).__name__}: {exc}"[:300],
                           calls=1, input_tokens=prompt_len)
        new = out[:, prompt_len:]
        text = processor.batch_decode(new, skip_special_tokens=True)[0]
        return read_reply(self, prompt, read, text, calls=1, input_tokens=prompt_len,
                          output_tokens=int(new.shape[1]))
