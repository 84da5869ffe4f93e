"""The options of one explanation run, validated once, frozen afterwards."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from lexflow.errors import ConfigError, did_you_mean

BIASES = ("auto", "disentanglement", "combination", "conditional")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("float32", "float16", "bfloat16")


def parse_latents(value: str | int | list[int] | tuple[int, ...] | None) -> tuple[int, ...] | None:
    """``"all"``/None -> None (every latent); ``"0,3,5"`` or ``"2-4"`` -> a sorted tuple."""
    if value is None:
        return None
    if isinstance(value, int):
        value = [value]
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    else:
        text = str(value).strip()
        if text.lower() in ("", "all"):
            return None
        items = [p.strip() for p in text.split(",") if p.strip()]
    out: set[int] = set()
    for item in items:
        try:
            if "-" in item[1:]:
                lo, hi = item.split("-", 1) if not item.startswith("-") else ("", "")
                start, stop = int(lo), int(hi)
                if stop < start:
                    raise ValueError
                out.update(range(start, stop + 1))
            else:
                out.add(int(item))
        except ValueError:
            raise ConfigError(
                f"latents: could not read {item!r} in {value!r}. "
                "Use 'all', a list like '0,3,5', or a range like '0-4'."
            ) from None
    negative = sorted(i for i in out if i < 0)
    if negative:
        raise ConfigError(f"latents: indices start at 0; got {negative}.")
    return tuple(sorted(out))


@dataclass(frozen=True)
class ExplainConfig:
    """Everything that changes what a run computes.

    Attributes:
        explainer: explainer URI (``measure``, ``openai:/gpt-4o``, ...).
        samples: answers asked per latent (the method's n). The ``measure`` explainer is
            deterministic and instead takes one answer per base sample (row).
        steps: frames per traversal (columns of a grid), at least 2.
        span: traversal half-width in prior standard deviations; frames go from -span to +span.
        rows: base codes per grid (rows), each z ~ N(0, I) drawn from ``seed``.
        latents: latent indices to explain; None means all.
        bias: inductive bias of the prompt/evidence (``auto`` reads the model metadata).
        threshold: certainty in [0, 1] below which the answer is "No clear explanation".
        seed: seed of the base codes; the same seed gives the same grids.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``, ``mps``.
        batch_size: latent codes decoded per forward call.
        concurrency: explainer requests in flight at once (MLLM explainers).
        timeout: seconds one explainer call may take before it is retried or failed.
        certainty: how answers are compared: ``bow`` (the paper's bag-of-words cosine),
            ``semantic`` (sentence embeddings, default model) or ``semantic:<path or package>``.
        grounding: put the measured evidence into MLLM prompts and flag answers that contradict it.
        cache: directory of the on-disk answer cache; ``none`` disables it; None = default.
        top_k: explain only the k most active latents (highest measured total_change); the
            other active latents are measured but skipped (see the README); None = all.
        directions: diffusion models: h-space directions to explain (k); None = the model's
            metadata, else 5 (the paper's k).
        edit_prompt: Stable Diffusion: the edit prompt of the Jacobian and the guidance (the
            conditional bias names it); an error for unconditional models.
        image: diffusion models: image path(s) to invert (comma-separated, or a directory), each
            one grid row; None = rows sampled from noise.
        ddim_steps: diffusion models: DDIM steps over the schedule (the paper: 100); None = the
            model's metadata, else 100.
        dtype: diffusion models: float32, float16 (half precision, CUDA only) or bfloat16.
    """

    explainer: str = "measure"
    samples: int = 5
    steps: int = 5
    span: float = 3.0
    rows: int = 4
    latents: tuple[int, ...] | None = None
    bias: str = "auto"
    threshold: float = 0.5
    seed: int = 0
    device: str = "auto"
    batch_size: int = 256
    concurrency: int = 16
    timeout: float = 60.0
    certainty: str = "bow"
    grounding: bool = False
    cache: str | None = None
    top_k: int | None = None
    directions: int | None = None
    edit_prompt: str | None = None
    image: str | None = None
    ddim_steps: int | None = None
    dtype: str = "float32"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not isinstance(self.steps, int) or self.steps < 2:
            problems.append(f"steps must be an integer >= 2 (frames per traversal); got {self.steps!r}")
        if not isinstance(self.samples, int) or self.samples < 1:
            problems.append(f"samples must be an integer >= 1; got {self.samples!r}")
        if not isinstance(self.rows, int) or self.rows < 1:
            problems.append(f"rows must be an integer >= 1; got {self.rows!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            problems.append(f"batch_size must be an integer >= 1; got {self.batch_size!r}")
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            problems.append(f"concurrency must be an integer >= 1; got {self.concurrency!r}")
        if not (isinstance(self.timeout, (int, float)) and self.timeout > 0):
            problems.append(f"timeout must be a positive number of seconds; got {self.timeout!r}")
        if not (self.certainty == "bow" or str(self.certainty).startswith("semantic")):
            problems.append(
                f"certainty must be 'bow', 'semantic' or 'semantic:<model path>'; got {self.certainty!r}"
            )
        if not (isinstance(self.span, (int, float)) and math.isfinite(self.span) and self.span > 0):
            problems.append(f"span must be a positive number of prior std; got {self.span!r}")
        if not (isinstance(self.threshold, (int, float)) and 0.0 <= self.threshold <= 1.0):
            problems.append(f"threshold must be between 0 and 1; got {self.threshold!r}")
        if self.bias not in BIASES:
            problems.append(
                f"bias must be one of {', '.join(BIASES)}; got {self.bias!r}."
                + did_you_mean(str(self.bias), BIASES)
            )
        dev = str(self.device)
        if dev not in DEVICES and not (dev.startswith("cuda:") and dev[5:].isdigit()):
            problems.append(
                f"device must be one of {', '.join(DEVICES)} or cuda:N; got {self.device!r}"
            )
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            problems.append(f"top_k must be an integer >= 1 (or unset for all); got {self.top_k!r}")
        for key in ("directions", "ddim_steps"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                problems.append(f"{key} must be an integer >= 1 (or unset); got {value!r}")
        if self.dtype not in DTYPES:
            problems.append(f"dtype must be one of {', '.join(DTYPES)}; got {self.dtype!r}")
        if not self.explainer or not isinstance(self.explainer, str):
            problems.append(f"explainer must be a name or URI like 'measure'; got {self.explainer!r}")
        if problems:
            raise ConfigError("Invalid options:\n  - " + "\n  - ".join(problems))

    def latent_indices(self, latent_dim: int) -> tuple[int, ...]:
        """The latents to explain for a model with ``latent_dim`` latents, checked against it."""
        if self.latents is None:
            return tuple(range(latent_dim))
        bad = [i for i in self.latents if i >= latent_dim]
        if bad:
            raise ConfigError(
                f"latents {bad} out of range: this model has {latent_dim} latents "
                f"(indices 0 to {latent_dim - 1})."
            )
        if not self.latents:
            raise ConfigError("latents: the list is empty; use 'all' or name at least one index.")
        return self.latents

    def frame_values(self) -> list[float]:
        """Perturbation values in prior std units, increasing: -span .. +span in ``steps`` frames."""
        n = self.steps
        return [-self.span + 2 * self.span * k / (n - 1) for k in range(n)]

    def as_params(self) -> dict[str, str]:
        """The options as MLflow params (strings), named like the MLproject parameters."""
        d = asdict(self)
        d.pop("extra")
        d["cache"] = "default" if self.cache is None else self.cache
        d["latents"] = "all" if self.latents is None else ",".join(map(str, self.latents))
        d["top_k"] = "all" if self.top_k is None else str(self.top_k)
        for key in ("directions", "ddim_steps", "edit_prompt", "image"):
            if d[key] is None:
                d[key] = ""
        return {k: str(v) for k, v in d.items()}
