"""``lexflow explain ... --dry-run``: what a run would send, and an estimate of what it would cost.

:func:`lexflow.tracking.job.dry_run` resolves and downloads the model (reads only) and asks the
engine for the requests a real run would send (:func:`lexflow.engine.requests_for`: the same plan,
bias, edit prompt and top_k); :func:`preview` shows them. Nothing is sent: no MLLM call, no MLflow
run, no tag. Calls already answered in the cache are not counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from lexflow.explainers.base import Explainer, ExplainRequest
from lexflow.explainers.mllm import CallPreview, MLLMExplainer


@dataclass(frozen=True)
class DryRun:
    """The plan of a run.

    Attributes:
        model_uri, explainer: what would run. is_mllm: False for ``measure`` (no calls at all).
        latents: one preview per active latent; inactive: latents that would not be asked.
        calls, cached, input_tokens, output_tokens, cost_usd: totals (tokens and cost estimated).
    """

    model_uri: str
    explainer: str
    is_mllm: bool
    latents: tuple[CallPreview, ...]
    inactive: tuple[int, ...]

    @property
    def calls(self) -> int:
        return sum(p.calls for p in self.latents)

    @property
    def cached(self) -> int:
        return sum(p.cached for p in self.latents)

    @property
    def input_tokens(self) -> int:
        return sum(p.input_tokens for p in self.latents)

    @property
    def output_tokens(self) -> int:
        return sum(p.output_tokens for p in self.latents)

    @property
    def cost_usd(self) -> float:
        return sum(p.cost_usd for p in self.latents)

    def to_dict(self) -> dict[str, Any]:
        return {"model_uri": self.model_uri, "explainer": self.explainer, "is_mllm": self.is_mllm,
                "latents": [asdict(p) for p in self.latents], "inactive": list(self.inactive),
                "calls": self.calls, "cached": self.cached, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "cost_usd": self.cost_usd}

    def text(self) -> str:
        """The readable form the CLI prints."""
        lines = [f"Dry run: {self.model_uri} with {self.explainer} (nothing is sent, nothing written)"]
        for p in self.latents:
            images = ", ".join(f"{w}x{h} px ({n / 1024:.1f} KiB)" for w, h, n in p.images)
            lines += ["", f"--- latent {p.label}: {p.calls} call(s), {p.cached} cached; images: {images}",
                      p.prompt]
        if self.inactive:
            lines += ["", f"inactive (not asked): {', '.join(map(str, self.inactive))}"]
        lines += ["", f"total: {self.calls} call(s) ({self.cached} cached), about {self.input_tokens} input "
                      f"and {self.output_tokens} output tokens, about ${self.cost_usd:.4f}"
                      + ("" if self.is_mllm else " (the measure explainer makes no calls)")]
        return "\n".join(lines)


def preview(model_uri: str, explainer: Explainer, requests: Sequence[ExplainRequest],
            indices: Sequence[int]) -> DryRun:
    """The plan of a run that would send ``requests`` (the engine's, see
    :func:`lexflow.engine.requests_for`) over ``indices``: what each call would send and cost."""
    active = {r.index for r in requests}
    if isinstance(explainer, MLLMExplainer):
        previews = tuple(explainer.preview(r) for r in requests)
    else:
        previews = tuple(CallPreview(r.index, r.label, "(no prompt: answers come from measurements)",
                                     (), 0, 0, 0, 0, 0.0) for r in requests)
    return DryRun(model_uri, explainer.uri, explainer.is_mllm, previews,
                  tuple(i for i in indices if i not in active))
