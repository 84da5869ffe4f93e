"""The main job: model URI -> decode -> evidence -> explainer -> uncertainty -> record.

Validation happens before anything is written: a bad URI, a model that breaks the contract or an
out-of-range option fails without touching the registry. Once the version is tagged ``running``,
any failure (including Ctrl-C) tags it ``failed`` and removes partial latent tags.

Per-latent results are saved as they finish, and a rerun after a crash resumes the unfinished run
(:mod:`lexflow.resume`); ``top_k`` explains only the most active latents (the rest are skipped).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from lexflow import names, resume, tracking
from lexflow.adapters.base import Decoder, ModelInfo, load_decoder
from lexflow.config import ExplainConfig, check_environment, env_seconds
from lexflow.decode import BatchDecoder, decode_traversals
from lexflow.errors import ConfigError, ExplainerError, TrackingError
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
from lexflow.sanitize import clean, clean_response
from lexflow.uncertainty import Similarity, bow_similarity, consensus, similarity_for


@contextmanager
def progress_bar(total: int, desc: str, enabled: bool) -> Iterator[Any]:
    from tqdm.auto import tqdm

    on = enabled and not os.environ.get(names.ENV_NO_PROGRESS)
    with tqdm(total=total, desc=desc, unit="img" if "decode" in desc else "latent",
              disable=not on, file=sys.stderr, leave=True, dynamic_ncols=True) as bar:
        yield bar


def resolve_bias(bias: str, info: ModelInfo, condition: str | None = None) -> tuple[str, str | None]:
    """The bias to use and its condition; ``auto`` reads the model metadata. ``condition`` (an
    edit prompt given for this run) overrides the metadata's; CSVAE ``attributes`` carry their
    own condition each."""
    chosen = info.metadata.get("bias", "disentanglement") if bias == "auto" else bias
    condition = condition or info.metadata.get("condition") or info.metadata.get("edit_prompt")
    if chosen == "conditional" and not condition and not info.metadata.get("attributes"):
        raise ConfigError(
            "bias=conditional needs a condition (a text prompt or attribute label): log the model "
            "with metadata={'lexflow': {'condition': '...'}}, give an edit prompt (edit_prompt=, "
            "--edit-prompt) for a text-conditional diffusion model, or use bias=disentanglement."
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


def select_top_k(measured: dict[int, _Measured], k: int | None) -> set[int]:
    """The active latents to explain: all, or the ``k`` with the largest measured total_change."""
    active = sorted((i for i, m in measured.items() if m.evidence.active),
                    key=lambda i: (-measured[i].evidence.total_change, i))
    return set(active if k is None else active[:k])


def measure_latents(
    decoder: Decoder, config: ExplainConfig, indices: tuple[int, ...], *, bias: str,
    output_range: tuple[float, float] | None, progress: bool = True,
    restored: resume.Restored | None = None, checkpoint: resume.Checkpoint | None = None,
    plan: Any = None,
) -> tuple[dict[int, _Measured], tuple[float, float], tuple[float, ...]]:
    """Decode every traversal (and comparison rows), measure it and render its grid.

    Frames live one decode group at a time; only evidence and PNG grids are kept. Latents in
    ``restored`` (an earlier attempt's checkpoint) are not decoded again; new ones are saved to
    ``checkpoint`` as they finish. Comparison rows are decoded only for the latents to explain
    (``config.top_k``). ``plan`` says what an index moves (lexflow.perturb.plan_for: one latent,
    a group, a CSVAE attribute or a diffusion direction); by default the decoder's own plan or
    one latent at a time.
    """
    from lexflow.perturb import TraversalPlan

    restored = restored or resume.Restored()
    if plan is None:
        make = getattr(decoder, "traversal_plan", None)
        plan = make(config) if callable(make) else TraversalPlan.from_config(decoder.latent_dim, config)
    per = plan.rows * plan.steps
    comparisons = bias == "disentanglement" and plan.items > 1
    measured = {i: _Measured(*restored.measured[i]) for i in indices if i in restored.measured}
    todo = [i for i in indices if i not in measured]
    with progress_bar(len(todo) * per, "decode", progress) as bar:
        batch = BatchDecoder(decoder, batch_size=config.batch_size,
                             output_range=output_range or restored.output_range,
                             on_batch=bar.update)
        for t in decode_traversals(batch, plan.codes, todo, plan.rows, plan.values):
            ev = measure_traversal(t.index, t.frames)
            measured[t.index] = _Measured(ev, png_bytes(traversal_grid(t.frames, plan.values)))
            if checkpoint:
                checkpoint.output_range = batch.output_range
                checkpoint.add_measured(t.index, ev, measured[t.index].grid)
        if checkpoint:
            checkpoint.flush()
        measured = {i: measured[i] for i in indices}  # in the order asked for
        if comparisons:
            chosen = select_top_k(measured, config.top_k)
            partners = {i: j for i, j in _partners(measured, plan.items).items()
                        if i in chosen}
            for i, j in partners.items():
                if i in restored.comparisons and restored.comparisons[i][0] == j:
                    _, measured[i].comparison, measured[i].comparison_grid = restored.comparisons[i]
                    measured[i].partner = j
            partners = {i: j for i, j in partners.items() if measured[i].partner is None}
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
                    if checkpoint:
                        checkpoint.add_comparison(i, partners[i], m.comparison, m.comparison_grid)
            if checkpoint:
                checkpoint.flush()
    return measured, batch.output_range or (0.0, 1.0), plan.values


def _latent_result(
    i: int, d: int, m: _Measured, resp: ExplainResponse | None, threshold: float,
    latent_names: tuple[str, ...] | None, similarity: Similarity = bow_similarity,
    item: dict[str, Any] | None = None,
) -> LatentResult:
    common: dict[str, Any] = dict(
        index=i, label=names.latent_label(i, d), name=latent_names[i] if latent_names else None,
        evidence=m.evidence.to_dict(), image=names.traversal_path(i, d),
        comparison_image=names.traversal_path(i, d, comparison=True) if m.comparison_grid else None,
        comparison_evidence=m.comparison.to_dict() if m.comparison else None, partner=m.partner,
    )
    common.update(item or {})  # kind, members, condition of a non-latent item
    if resp is None:
        return LatentResult(status="inactive", explanation=None, explainable=False,
                            certainty=0.0, answers=(), **common)
    c = consensus(resp.answers, threshold=threshold, similarity=similarity)
    if resp.failures and not any(a.strip() for a in resp.answers):
        status = "failed"
    else:
        status = "explained" if c.explainable else "unclear"
    details = dict(resp.details)
    flags = tuple(str(f) for f in details.pop("flags", ()))
    return LatentResult(status=status, explanation=c.explanation, explainable=c.explainable,
                        certainty=c.certainty, answers=c.answers, failures=resp.failures,
                        flags=flags, details=details, **common)


def build_requests(
    measured: dict[int, _Measured], values: tuple[float, ...], d: int, config: ExplainConfig,
    bias: str, condition: str | None, latent_names: tuple[str, ...] | None,
    groups: Sequence[Sequence[int]] | None = None,
    members: dict[int, tuple[int, ...]] | None = None, conditions: dict[int, str] | None = None,
) -> list[ExplainRequest]:
    """One request per active latent (inactive ones are never shown to an explainer).

    ``members`` / ``conditions``: per explained item (a group or attribute of a VectorPlan),
    the latents it moves and its own condition."""
    group_of = {int(i): tuple(int(j) for j in g) for g in (groups or ()) for i in g}
    group_of.update(members or {})
    conditions = conditions or {}
    return [
        ExplainRequest(
            index=i, label=names.latent_label(i, d), bias=bias, values=values, grid_png=m.grid,
            evidence=m.evidence, samples=config.samples,
            name=latent_names[i] if latent_names else None,
            condition=conditions.get(i, condition),
            comparison_png=m.comparison_grid, comparison_evidence=m.comparison,
            group=group_of.get(i),
        )
        for i, m in measured.items() if m.evidence.active
    ]


def run_explainer(
    explainer: Explainer, measured: dict[int, _Measured], values: tuple[float, ...], d: int,
    config: ExplainConfig, bias: str, condition: str | None,
    latent_names: tuple[str, ...] | None, progress: bool = True,
    groups: Sequence[Sequence[int]] | None = None,
    restored: resume.Restored | None = None, checkpoint: resume.Checkpoint | None = None,
    members: dict[int, tuple[int, ...]] | None = None, conditions: dict[int, str] | None = None,
) -> dict[int, ExplainResponse]:
    """Ask the explainer about the chosen active latents (``config.top_k``); responses in
    ``restored`` are reused, new ones saved to ``checkpoint`` as they arrive."""
    done = dict((restored or resume.Restored()).responses)
    chosen = select_top_k(measured, config.top_k)
    requests = [r for r in build_requests({i: m for i, m in measured.items() if i in chosen},
                                          values, d, config, bias, condition, latent_names, groups,
                                          members, conditions)
                if r.index not in done]
    responses = {i: r for i, r in done.items() if i in chosen}
    with progress_bar(len(requests), "explain", progress) as bar:
        for r in explainer.explain_many(requests, on_done=lambda _: bar.update()):
            r = clean_response(r, (getattr(explainer, "_api_key", None),))  # hostile text
            responses[r.index] = r
            if checkpoint:
                checkpoint.add_response(r)
    if checkpoint:
        checkpoint.flush()
    return responses


def explain(
    model_uri: str, config: ExplainConfig | None = None, *, progress: bool = True,
    experiment: str | None = None,
) -> ExplainResult:
    """Explain every selected latent of a registered model and record the results.

    Returns the :class:`ExplainResult`; raises a :class:`lexflow.errors.LexflowError` subclass
    with a message for the user on bad input or failure.
    """
    from lexflow.signals import sigterm_raises

    config = config or ExplainConfig()
    check_environment()  # a bad LEXFLOW_* number fails now, not inside the failure handling
    with sigterm_raises():  # SIGTERM ends the run like Ctrl-C: tagged failed, with lexflow.error
        return _explain(model_uri, config, progress=progress, experiment=experiment)


def _explain(model_uri: str, config: ExplainConfig, *, progress: bool,
             experiment: str | None) -> ExplainResult:
    tracking.configure_http()
    tracking.check_reachable()
    explainer = get_explainer(config.explainer, explainer_options(config))
    similarity = similarity_for(config.certainty)  # fails now, not after the decode
    model = tracking.resolve(model_uri)
    with tempfile.TemporaryDirectory(prefix="lexflow-") as tmp:
        local, info = tracking.download(model, tmp)
        decoder = load_decoder(local, info, device=config.device)
        bias, condition = resolve_bias(config.bias, info, condition=config.edit_prompt or None)
        from lexflow.perturb import plan_for

        plan = plan_for(decoder, info.metadata, config, bias)  # checks options; computes lazily
        d = plan.items
        indices = config.latent_indices(d)
        condition = plan.condition or condition
        latent_names = plan.names or (info.latent_names(d) if plan.kind == "latent" else None)
        output_range = info.output_range or getattr(decoder, "output_range", None)
        key = resume.config_key(model, config)
        resume_id = resume.find_resumable(model, key)
        with tracking.RunContext(experiment, run_name=f"lexflow {model.name or model_uri}",
                                 run_id=resume_id) as run:
            tags = (tracking.VersionTags(model.name, model.version, run.run_id)
                    if model.name and model.version else None)
            tracking.log_params(run.run_id, {"model_uri": model_uri, **config.as_params()})
            checkpoint = resume.Checkpoint(run.run_id, key)
            restored = checkpoint.load()
            tracking.set_run_tags(run.run_id, {
                "lexflow.model_uri": model.download_uri, "lexflow.version": _version(),
                names.RUN_TAG_CONFIG_KEY: key, names.RUN_TAG_OWNER: resume.owner_tag(),
                names.RUN_TAG_RESUMED: str(len(restored))})
            try:
                if tags:  # inside the failure handling: an interrupted begin ends as failed
                    tags.begin(explainer.uri)
                result, skipped = _run(
                    run.run_id, model, explainer, decoder, config, indices, bias, condition,
                    latent_names, output_range, progress, similarity,
                    groups=info.metadata.get("groups") if plan.kind == "latent" else None,
                    restored=restored, checkpoint=checkpoint, plan=plan)
                if result.status == names.STATUS_FAILED:  # nothing answered: not a result
                    raise ExplainerError(result.no_answer_message())
                if tags:
                    tags.complete(version_tags(result) | _skipped_tags(result, skipped, config),
                                  _with_skipped(description_section(result), result, skipped),
                                  result.status)
            except BaseException as exc:
                lost = tracking.is_connection_error(exc)
                if not lost:  # keep what finished before the failure for the rerun
                    try:
                        checkpoint.flush()
                    except Exception as flush_exc:
                        print(f"lexflow: could not save the checkpoint: {flush_exc}", file=sys.stderr)
                wait = env_seconds(names.ENV_TRACKING_WAIT_S, 120.0)  # checked at the start
                back = tracking.wait_for_server(wait) if lost else True
                if tags and back:
                    msg = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                    msg = clean(msg) or type(exc).__name__  # may quote model or provider text
                    try:
                        tags.fail(msg)
                    except Exception as tag_exc:  # keep the original error in front
                        print(f"lexflow: could not tag the failure: {tag_exc}", file=sys.stderr)
                if lost:
                    raise TrackingError(_lost_server_message(run.run_id, back, wait)) from exc
                raise
    return result


def _item_info(plan: Any, indices: Sequence[int]
               ) -> tuple[dict[int, tuple[int, ...]], dict[int, str], dict[int, dict[str, Any]]]:
    """Per explained item: the latents it moves, its own condition, its LatentResult fields."""
    members = dict(enumerate(getattr(plan, "members", ()) or ()))
    conditions = dict(enumerate(getattr(plan, "conditions", None) or ()))
    items = {i: {"kind": plan.kind, "members": members.get(i),
                 "condition": conditions.get(i, plan.condition)} for i in indices}
    return members, conditions, items


def _lost_server_message(run_id: str, back: bool, wait: float) -> str:
    uri = tracking.tracking_uri()
    retries = os.environ.get(names.ENV_HTTP_MAX_RETRIES)
    head = (f"The MLflow tracking server at {uri} stopped answering during run {run_id} "
            f"(each call retried {retries} times; set {names.ENV_HTTP_MAX_RETRIES} and "
            f"{names.ENV_HTTP_TIMEOUT} to change that). ")
    if back:
        return head + ("It answers again: the version is tagged failed. Run the same command "
                       "again to resume the run from its checkpoint (finished latents are kept).")
    return head + (f"It did not come back within {wait:.0f} s ({names.ENV_TRACKING_WAIT_S}), so "
                   "the version may still be tagged running. When the server is back, run the "
                   "same command again: it resumes the run from its checkpoint.")


def _skipped_tags(result: ExplainResult, skipped: tuple[int, ...],
                  config: ExplainConfig) -> dict[str, str]:
    if config.top_k is None:
        return {}
    labels = ",".join(names.latent_label(i, result.latent_dim) for i in skipped)
    return {names.TAG_TOP_K: str(config.top_k),
            names.TAG_SKIPPED_LATENTS: labels[: names.TAG_VALUE_MAX]}


def _with_skipped(section: str, result: ExplainResult, skipped: tuple[int, ...]) -> str:
    """The description section with a line naming the latents --top-k left out."""
    if not skipped:
        return section
    labels = ", ".join(names.latent_label(i, result.latent_dim) for i in skipped)
    line = (f"\nSkipped (not among the {result.config.get('top_k')} most active latents, not "
            f"explained and not counted in the fraction): {labels}\n")
    return section.replace(names.DESCRIPTION_END, line + names.DESCRIPTION_END)


def _skipped_records(result: ExplainResult, measured: dict[int, _Measured],
                     skipped: tuple[int, ...]) -> list[dict[str, Any]]:
    d = result.latent_dim
    return [{"index": i, "label": names.latent_label(i, d), "status": "skipped",
             "reason": f"not among the {result.config.get('top_k')} most active latents (top_k)",
             "evidence": measured[i].evidence.to_dict(), "image": names.traversal_path(i, d)}
            for i in skipped]


def _skipped_html(result: ExplainResult, skipped: tuple[int, ...]) -> str:
    import html

    labels = ", ".join(names.latent_label(i, result.latent_dim) for i in skipped)
    return (f"<section id='skipped'><h2>Skipped latents</h2><p>Not among the "
            f"{html.escape(str(result.config.get('top_k')))} most active latents (top_k): "
            f"{html.escape(labels)}. They were measured but not explained, and are not counted "
            f"in the explainable fraction.</p></section>")


def dry_run(model_uri: str, config: ExplainConfig | None = None, *, progress: bool = True) -> Any:
    """Decode and measure, then say what would be sent and what it would cost; send nothing.

    Reads the registry but writes no run, tag or artifact. Returns a
    :class:`lexflow.explainers.dryrun.DryRun`.
    """
    from lexflow.explainers.dryrun import plan

    return plan(model_uri, config or ExplainConfig(), progress=progress)


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
    groups: Sequence[Sequence[int]] | None = None,
    restored: resume.Restored | None = None, checkpoint: resume.Checkpoint | None = None,
    plan: Any = None,
) -> tuple[ExplainResult, tuple[int, ...]]:
    """The result and the latents skipped by ``config.top_k`` (active, not explained)."""
    from lexflow.perturb import TraversalPlan

    plan = plan or TraversalPlan.from_config(decoder.latent_dim, config)
    d = plan.items
    measured, out_range, values = measure_latents(
        decoder, config, indices, bias=bias, output_range=output_range, progress=progress,
        restored=restored, checkpoint=checkpoint, plan=plan)
    members, conditions, items = _item_info(plan, indices)
    responses = run_explainer(explainer, measured, values, d, config, bias, condition,
                              latent_names, progress, groups=groups, restored=restored,
                              checkpoint=checkpoint, members=members, conditions=conditions)
    chosen = select_top_k(measured, config.top_k)
    skipped = tuple(i for i in indices if measured[i].evidence.active and i not in chosen)
    latents = tuple(_latent_result(i, d, measured[i], responses.get(i), config.threshold,
                                   latent_names, similarity, items[i])
                    for i in indices if i not in skipped)
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
        traversal=plan.describe() if plan.kind != "latent" else {},
    )
    images: dict[str, bytes] = {names.traversal_path(i, d): measured[i].grid for i in skipped}
    for r in latents:
        images[r.image] = measured[r.index].grid
        if r.comparison_image and measured[r.index].comparison_grid:
            images[r.comparison_image] = measured[r.index].comparison_grid  # type: ignore[assignment]
    report = report_html(result, images)
    if skipped:
        report = report.replace("</body>", _skipped_html(result, skipped) + "</body>")
    tracking.log_outputs(run_id, result, images, report,
                         {"skipped": _skipped_records(result, measured, skipped)} if skipped else None)
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
    if config.top_k is not None:
        metrics[names.METRIC_SKIPPED_LATENTS] = float(len(skipped))
    tracking.log_metrics(run_id, metrics)
    return result, skipped
