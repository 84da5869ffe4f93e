"""The options of one explanation run, validated once, frozen afterwards."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from lexflow import names
from lexflow.errors import ConfigError, brief, did_you_mean

BIASES = ("auto", "disentanglement", "combination", "conditional")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("float32", "float16", "bfloat16")
READBACK = ("auto", "off")

# Upper bounds, checked before any work (each is far above a useful value; past it a run would
# exhaust memory, the provider budget or the registry before telling the user anything).
MAX_LATENT_INDEX = 2**20  # latent indices start at 0; a range is checked before it is expanded
MAX_ROWS = 256  # base samples per grid: an MLLM cannot read more rows
MAX_STEPS = 64  # frames per traversal
MAX_SAMPLES = 100  # answers per latent (the method uses 5); each is a paid call
MAX_BATCH = 65536  # codes decoded per forward call
MAX_CONCURRENCY = 1024  # explainer calls in flight
MAX_SPAN = 100.0  # prior standard deviations
MAX_TIMEOUT = 86400.0  # seconds per explainer call
MAX_DIFFUSION = 10000  # directions, DDIM steps
SEED_MAX = 2**32 - 1  # numpy's seed range


def parse_explainer_options(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``-o key=value`` pairs for the explainer (temperature, max_attempts, base_url, ...), as
    text: each explainer converts and checks its own (``lexflow explain`` and
    ``benchmarks/quality.py`` both read them here). ConfigError on an item without ``=`` or key."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


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
            else:
                start = stop = int(item)
        except ValueError:
            raise ConfigError(
                f"latents: could not read {brief(item)} in {brief(value)}. "
                "Use 'all', a list like '0,3,5', or a range like '0-4'."
            ) from None
        if stop > MAX_LATENT_INDEX:  # checked before the range is expanded
            raise ConfigError(
                f"latents: {brief(item)} goes past index {MAX_LATENT_INDEX:,}; indices must be at "
                f"most {MAX_LATENT_INDEX:,} (and below the model's latent count).")
        if start == stop:
            out.add(start)
        else:
            out.update(range(start, stop + 1))
    negative = sorted(i for i in out if i < 0)
    if negative:
        raise ConfigError(f"latents: indices start at 0; got {brief(negative)}.")
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
        readback: ``auto``: a model with an encoder reads every traversal back, and a latent's
            certainty is its answers' agreement times that read-back (lexflow.stages.readback);
            ``off``: the certainty is the agreement alone.
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
    readback: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        problems: list[str] = []
        for key, low, high, what in (
            ("steps", 2, MAX_STEPS, "frames per traversal"),
            ("samples", 1, MAX_SAMPLES, "answers per latent, each a call"),
            ("rows", 1, MAX_ROWS, "base samples per grid"),
            ("batch_size", 1, MAX_BATCH, "codes per forward call"),
            ("concurrency", 1, MAX_CONCURRENCY, "calls in flight"),
            ("seed", 0, SEED_MAX, "seed of the base samples"),
        ):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                problems.append(f"{key} must be an integer >= {low} ({what}), at most {high:,}; "
                                f"got {brief(value)}")
        if not (isinstance(self.timeout, (int, float)) and math.isfinite(self.timeout)
                and 0 < self.timeout <= MAX_TIMEOUT):
            problems.append(f"timeout must be a positive number of seconds, at most {MAX_TIMEOUT:g}; "
                            f"got {brief(self.timeout)}")
        if not (self.certainty == "bow" or str(self.certainty).startswith("semantic")):
            problems.append(
                f"certainty must be 'bow', 'semantic' or 'semantic:<model path>'; got {self.certainty!r}"
            )
        if not (isinstance(self.span, (int, float)) and math.isfinite(self.span)
                and 0 < self.span <= MAX_SPAN):
            problems.append(f"span must be a positive number of prior std, at most {MAX_SPAN:g}; "
                            f"got {brief(self.span)}")
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
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or not 1 <= value <= MAX_DIFFUSION):
                problems.append(f"{key} must be an integer from 1 to {MAX_DIFFUSION:,} (or unset); "
                                f"got {brief(value)}")
        if self.readback not in READBACK:
            problems.append(f"readback must be one of {', '.join(READBACK)}; got "
                            f"{brief(self.readback)}")
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
                f"latents {brief(bad)} out of range: this model has {latent_dim} latents "
                f"(indices 0 to {latent_dim - 1})" + (f"; {len(bad):,} indices are too large."
                                                      if len(bad) > 6 else ".")
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


def env_seconds(name: str, default: float) -> float:
    """A number of seconds (>= 0) from the environment variable ``name``, or ``default`` when it is
    unset; a ConfigError (exit 2) naming the variable when it is not such a number."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"The environment variable {name} must be a number of seconds >= 0; got "
                          f"{brief(raw)}. Unset it for the default ({default:g} s).")
    return value


def check_environment() -> None:
    """Read every lexflow environment variable once, so a bad value fails before any work."""
    env_seconds(names.ENV_CHECKPOINT_INTERVAL, 5.0)
    env_seconds(names.ENV_TRACKING_WAIT_S, 120.0)
    env_seconds(names.ENV_RESUME_STALE_S, 600.0)
