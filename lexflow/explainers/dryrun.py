"""``lexflow explain ... --dry-run``: what a run would send, and an estimate of what it would cost.

The model is resolved and downloaded (reads only), decoded and measured exactly as in a real run,
so the prompts and images shown are the ones that would be sent. Then nothing is sent: no MLLM
call, no MLflow run, no tag. Calls already answered in the cache are not counted.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from typing import Any

from lexflow.config import ExplainConfig
from lexflow.explainers.base import get_explainer
from lexflow.explainers.mllm import CallPreview, MLLMExplainer

MLLM_SCHEMES = ("openai", "anthropic", "gemini", "ollama")


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


def plan(model_uri: str, config: ExplainConfig, *, progress: bool = True) -> DryRun:
    from lexflow import tracking
    from lexflow.adapters.base import load_decoder
    from lexflow.pipeline import build_requests, explainer_options, measure_latents, resolve_bias

    options = explainer_options(config)
    if config.explainer.partition(":")[0] in MLLM_SCHEMES:
        options["dry_run"] = True  # no API key needed to see the plan
    explainer = get_explainer(config.explainer, options)
    model = tracking.resolve(model_uri)
    with tempfile.TemporaryDirectory(prefix="lexflow-dry-") as tmp:
        local, info = tracking.download(model, tmp)
        decoder = load_decoder(local, info, device=config.device)
        d = decoder.latent_dim
        indices = config.latent_indices(d)
        bias, condition = resolve_bias(config.bias, info)
        measured, _, values = measure_latents(decoder, config, indices, bias=bias,
                                              output_range=info.output_range, progress=progress)
        requests = build_requests(measured, values, d, config, bias, condition, info.latent_names(d),
                                  info.metadata.get("groups"))
    active = {r.index for r in requests}
    if isinstance(explainer, MLLMExplainer):
        previews = tuple(explainer.preview(r) for r in requests)
    else:
        previews = tuple(CallPreview(r.index, r.label, "(no prompt: answers come from measurements)",
                                     (), 0, 0, 0, 0, 0.0) for r in requests)
    return DryRun(model_uri, explainer.uri, explainer.is_mllm, previews,
                  tuple(i for i in indices if i not in active))
