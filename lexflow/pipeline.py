"""The main job: model URI -> decode -> evidence -> explainer -> uncertainty -> record.

Validation happens before anything is written: a bad URI, a model that breaks the contract or an
out-of-range option fails without touching the registry. Once the version is tagged ``running``,
any failure (including Ctrl-C) tags it ``failed`` and removes partial latent tags.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from lexflow import names, tracking
from lexflow.adapters.base import Decoder, ModelInfo, load_decoder
from lexflow.config import ExplainConfig
from lexflow.decode import BatchDecoder, decode_traversals
from lexflow.errors import ConfigError
from lexflow.evidence import Evidence, measure_traversal
from lexflow.explainers.base import Explainer, ExplainRequest, ExplainResponse, get_explainer
from lexflow.record import (
    ExplainResult,
    LatentResult,
    description_section,
    report_html,
    version_tags,
)
from lexflow.render import png_bytes, traversal_grid
from lexflow.uncertainty import Similarity, bow_similarity, consensus, similarity_for


@contextmanager
def progress_bar(total: int, desc: str, enabled: bool) -> Iterator[Any]:
    from tqdm.auto import tqdm

    on = enabled and not os.environ.get(names.ENV_NO_PROGRESS)
    with tqdm(total=total, desc=desc, unit="img" if "decode" in desc else "latent",
              disable=not on, file=sys.stderr, leave=True, dynamic_ncols=True) as bar:
        yield bar


def resolve_bias(bias: str, info: ModelInfo) -> tuple[str, str | None]:
    """The bias to use and its condition; ``auto`` reads the model metadata."""
    chosen = info.metadata.get("bias", "disentanglement") if bias == "auto" else bias
    condition = info.metadata.get("condition")
    if chosen == "conditional" and not condition:
        raise ConfigError(
            "bias=conditional needs a condition (a text prompt or attribute label): log the model "
            "with metadata={'lexflow': {'condition': '...'}}, or use bias=disentanglement."
        )
    if chosen == "combination" and not info.metadata.get("groups"):
        raise ConfigError(
            "bias=combination needs groups of latents that move together: log the model with "
            "metadata={'lexflow': {'groups': [[0, 1], [2, 3]]}}, or use bias=disentanglement."
        )
    if chosen not in ("disentanglement", "combination", "conditional"):
        raise ConfigError(f"Unknown bias {chosen!r} in the model metadata.")
    return chosen, condition


@dataclass
class _Measured:
    evidence: Evidence
    grid: bytes
    comparison: Evidence | None = None
    comparison_grid: bytes | None = None
    partner: int | None = None


def _partners(measured: dict[int, _Measured], latent_dim: int) -> dict[int, int]:
    """For each active latent, the most active other latent (clamped in the comparison row)."""
    by_activity = sorted(measured, key=lambda i: -measured[i].evidence.total_change)
    out = {}
    for i, m in measured.items():
        if not m.evidence.active or latent_dim < 2:
            continue
        others = [j for j in by_activity if j != i and measured[j].evidence.active]
        out[i] = others[0] if others else (i + 1) % latent_dim
    return out


def measure_latents(
    decoder: Decoder, config: ExplainConfig, indices: tuple[int, ...], *, bias: str,
    output_range: tuple[float, float] | None, progress: bool = True,
) -> tuple[dict[int, _Measured], tuple[float, float], tuple[float, ...]]:
    """Decode every traversal (and comparison rows), measure it and render its grid."""
    from lexflow.perturb import TraversalPlan

    plan = TraversalPlan.from_config(decoder.latent_dim, config)
    per = plan.rows * plan.steps
    comparisons = bias == "disentanglement" and decoder.latent_dim > 1
    total = len(indices) * per
    measured: dict[int, _Measured] = {}
    with progress_bar(total, "decode", progress) as bar:
        batch = BatchDecoder(decoder, batch_size=config.batch_size, output_range=output_range,
                             on_batch=bar.update)
        for t in decode_traversals(batch, plan.codes, list(indices), plan.rows, plan.values):
            ev = measure_traversal(t.index, t.frames)
            measured[t.index] = _Measured(ev, png_bytes(traversal_grid(t.frames, plan.values)))
        if comparisons:
            partners = _partners(measured, decoder.latent_dim)
            bar.total += 2 * plan.steps * len(partners)
            bar.refresh()
            order = list(partners)
            for g in range(0, len(order), max(1, config.batch_size // (2 * plan.steps))):
                chunk = order[g : g + max(1, config.batch_size // (2 * plan.steps))]
                z = np.concatenate([plan.comparison_codes(i, partners[i]) for i in chunk])
                imgs = batch.decode(z)
                for k, i in enumerate(chunk):
                    frames = imgs[k * 2 * plan.steps : (k + 1) * 2 * plan.steps]
                    frames = frames.reshape(2, plan.steps, *frames.shape[1:])
                    m = measured[i]
                    m.comparison = measure_traversal(i, frames)
                    m.comparison_grid = png_bytes(traversal_grid(frames, plan.values))
                    m.partner = partners[i]
    return measured, batch.output_range or (0.0, 1.0), plan.values


def _latent_result(
    i: int, d: int, m: _Measured, resp: ExplainResponse | None, threshold: float,
    latent_names: tuple[str, ...] | None, similarity: Similarity = bow_similarity,
) -> LatentResult:
    common = dict(
        index=i, label=names.latent_label(i, d), name=latent_names[i] if latent_names else None,
        evidence=m.evidence.to_dict(), image=names.traversal_path(i, d),
        comparison_image=names.traversal_path(i, d, comparison=True) if m.comparison_grid else None,
        comparison_evidence=m.comparison.to_dict() if m.comparison else None, partner=m.partner,
    )
    if resp is None:
        return LatentResult(status="inactive", explanation=None, explainable=False,
                            certainty=0.0, answers=(), **common)  # type: ignore[arg-type]
    c = consensus(resp.answers, threshold=threshold, similarity=similarity)
    if resp.failures and not any(a.strip() for a in resp.answers):
        status = "failed"
    else:
        status = "explained" if c.explainable else "unclear"
    return LatentResult(status=status, explanation=c.explanation, explainable=c.explainable,
                        certainty=c.certainty, answers=c.answers, failures=resp.failures,
                        **common)  # type: ignore[arg-type]


def run_explainer(
    explainer: Explainer, measured: dict[int, _Measured], values: tuple[float, ...], d: int,
    config: ExplainConfig, bias: str, condition: str | None,
    latent_names: tuple[str, ...] | None, progress: bool = True,
) -> dict[int, ExplainResponse]:
    requests = [
        ExplainRequest(
            index=i, label=names.latent_label(i, d), bias=bias, values=values, grid_png=m.grid,
            evidence=m.evidence, samples=config.samples,
            name=latent_names[i] if latent_names else None, condition=condition,
            comparison_png=m.comparison_grid, comparison_evidence=m.comparison,
        )
        for i, m in measured.items() if m.evidence.active
    ]
    with progress_bar(len(requests), "explain", progress) as bar:
        return {r.index: r for r in explainer.explain_many(requests, on_done=lambda _: bar.update())}


def explain(
    model_uri: str, config: ExplainConfig | None = None, *, progress: bool = True,
    experiment: str | None = None,
) -> ExplainResult:
    """Explain every selected latent of a registered model and record the results.

    Returns the :class:`ExplainResult`; raises a :class:`lexflow.errors.LexflowError` subclass
    with a message for the user on bad input or failure.
    """
    config = config or ExplainConfig()
    tracking.check_reachable()
    explainer = get_explainer(config.explainer, explainer_options(config))
    similarity = similarity_for(config.certainty)  # fails now, not after the decode
    model = tracking.resolve(model_uri)
    with tempfile.TemporaryDirectory(prefix="lexflow-") as tmp:
        local, info = tracking.download(model, tmp)
        decoder = load_decoder(local, info, device=config.device)
        d = decoder.latent_dim
        indices = config.latent_indices(d)
        bias, condition = resolve_bias(config.bias, info)
        latent_names = info.latent_names(d)
        output_range = info.output_range
        with tracking.RunContext(experiment, run_name=f"lexflow {model.name or model_uri}") as run:
            tags = (tracking.VersionTags(model.name, model.version, run.run_id)
                    if model.name and model.version else None)
            tracking.log_params(run.run_id, {"model_uri": model_uri, **config.as_params()})
            tracking.set_run_tags(run.run_id, {
                "lexflow.model_uri": model.download_uri, "lexflow.version": _version()})
            if tags:
                tags.begin(explainer.uri)
            try:
                result = _run(run.run_id, model, explainer, decoder, config, indices, bias,
                              condition, latent_names, output_range, progress, similarity)
                if tags:
                    tags.complete(version_tags(result), description_section(result), result.status)
            except BaseException as exc:
                if tags:
                    msg = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                    try:
                        tags.fail(msg)
                    except Exception as tag_exc:  # keep the original error in front
                        print(f"lexflow: could not tag the failure: {tag_exc}", file=sys.stderr)
                raise
    return result


def explainer_options(config: ExplainConfig) -> dict[str, Any]:
    """What an explainer backend is built with (from_uri's options)."""
    return {"concurrency": config.concurrency, "timeout": config.timeout, "cache": config.cache,
            "grounding": config.grounding, "seed": config.seed, **config.extra}


def _version() -> str:
    from lexflow._version import __version__

    return __version__


def _run(
    run_id: str, model: tracking.ResolvedModel, explainer: Explainer, decoder: Decoder,
    config: ExplainConfig, indices: tuple[int, ...], bias: str, condition: str | None,
    latent_names: tuple[str, ...] | None, output_range: tuple[float, float] | None,
    progress: bool, similarity: Similarity = bow_similarity,
) -> ExplainResult:
    d = decoder.latent_dim
    measured, out_range, values = measure_latents(
        decoder, config, indices, bias=bias, output_range=output_range, progress=progress)
    responses = run_explainer(explainer, measured, values, d, config, bias, condition,
                              latent_names, progress)
    latents = tuple(_latent_result(i, d, measured[i], responses.get(i), config.threshold,
                                   latent_names, similarity) for i in indices)
    usage = {
        "calls": float(sum(r.calls for r in responses.values())),
        "input_tokens": float(sum(r.input_tokens for r in responses.values())),
        "output_tokens": float(sum(r.output_tokens for r in responses.values())),
        "cost_usd": float(sum(r.cost_usd for r in responses.values())),
    }
    result = ExplainResult(
        model_uri=model.uri, model_name=model.name, model_version=model.version, run_id=run_id,
        explainer=explainer.uri, explainer_is_mllm=explainer.is_mllm, latent_dim=d,
        config=config.as_params(), latents=latents, output_range=out_range, usage=usage,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    images: dict[str, bytes] = {}
    for r in latents:
        images[r.image] = measured[r.index].grid
        if r.comparison_image and measured[r.index].comparison_grid:
            images[r.comparison_image] = measured[r.index].comparison_grid  # type: ignore[assignment]
    tracking.log_outputs(run_id, result, images, report_html(result, images))
    metrics = {
        names.METRIC_EXPLAINABLE_FRACTION: result.explainable_fraction,
        names.METRIC_MEAN_CERTAINTY: result.mean_certainty,
        names.METRIC_ACTIVE_LATENTS: result.active_latents,
        names.METRIC_CALLS: usage["calls"],
        names.METRIC_INPUT_TOKENS: usage["input_tokens"],
        names.METRIC_OUTPUT_TOKENS: usage["output_tokens"],
        names.METRIC_COST: usage["cost_usd"],
    }
    metrics.update({names.certainty_metric(r.index, d): r.certainty for r in latents})
    tracking.log_metrics(run_id, metrics)
    return result
