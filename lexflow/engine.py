"""The engine: plan, decode, evidence, render, explainer and certainty, with no MLflow.

:func:`explain_decoder` is the only place the stages run, on frozen values:
``explain_decoder(decoder, info, config, explainer) -> ExplainResult``. Every entry point calls
it: the MLflow job (:mod:`lexflow.tracking.job`), the dry run (through :func:`requests_for`, the
requests the run would send), the demo's factor check, the quality suite and the evaluator.

What an explained item is (a latent, a group, a CSVAE attribute, a diffusion direction) and the
unit of its column values (prior std, guidance steps, multiples of a direction) come from the
:class:`lexflow.stages.plan.Plan` and travel in every :class:`ExplainRequest`.

Crash safety is a :class:`Checkpoint`: what an earlier attempt finished (``restored``) is not
computed again, and what finishes now is handed to it as it finishes. The MLflow layer's
checkpoint stores it as run artifacts; the engine does not know where.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from lexflow import names
from lexflow.adapters.base import Decoder, ModelInfo, RangedDecoder
from lexflow.config import ExplainConfig
from lexflow.errors import ConfigError
from lexflow.explainers.base import Explainer, ExplainRequest, ExplainResponse
from lexflow.record import SKIPPED, ExplainResult, LatentResult
from lexflow.sanitize import clean_response
from lexflow.stages.decode import BatchDecoder, decode_traversals
from lexflow.stages.evidence import Evidence, measure_traversal
from lexflow.stages.plan import Plan, plan_for
from lexflow.stages.render import png_bytes, traversal_grid
from lexflow.uncertainty import Similarity, consensus, similarity_for


@dataclass
class Restored:
    """What an earlier attempt of this run finished, keyed by item index.

    Attributes:
        measured: index -> (evidence, grid PNG).
        comparisons: index -> (partner, evidence, grid PNG) of the disentanglement comparison row.
        responses: index -> the explainer's response.
        output_range: the decoder's pixel range the first attempt used (kept for the rest).
    """

    measured: dict[int, tuple[Evidence, bytes]] = field(default_factory=dict)
    comparisons: dict[int, tuple[int, Evidence, bytes]] = field(default_factory=dict)
    responses: dict[int, ExplainResponse] = field(default_factory=dict)
    output_range: tuple[float, float] | None = None

    def __len__(self) -> int:
        return len(self.measured) + len(self.comparisons) + len(self.responses)


class Checkpoint(Protocol):
    """Where per-item results go as they finish, and what an earlier attempt left.

    Attributes:
        restored: what earlier attempts finished (empty for a fresh run).
        output_range: the decoder's pixel range, set by the engine once known.
    """

    restored: Restored
    output_range: tuple[float, float] | None

    def add_measured(self, index: int, evidence: Evidence, grid: bytes) -> None: ...

    def add_comparison(self, index: int, partner: int, evidence: Evidence, grid: bytes) -> None: ...

    def add_response(self, r: ExplainResponse) -> None: ...

    def flush(self) -> None: ...


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


@dataclass(frozen=True)
class Prepared:
    """What a run over one decoder does, checked before anything is decoded or written.

    Attributes:
        plan: what each index moves and how (see :class:`lexflow.stages.plan.Plan`).
        bias, condition: the inductive bias the prompts follow and its condition, if any.
        indices: the items to measure (``config.latents`` over ``plan.items``).
        names: a name per item, or None.
        output_range: the decoder's pixel range if known (metadata or adapter), else detected.
        groups: for one-latent plans under metadata ``groups``, the latents that move together.
        similarity: the certainty's answer similarity (``config.certainty``).
    """

    plan: Plan
    bias: str
    condition: str | None
    indices: tuple[int, ...]
    names: tuple[str, ...] | None
    output_range: tuple[float, float] | None
    groups: Sequence[Sequence[int]] | None
    similarity: Similarity

    @property
    def items(self) -> int:
        return self.plan.items


def prepare(decoder: Decoder, info: ModelInfo, config: ExplainConfig) -> Prepared:
    """Check the options against the model and build the plan (it computes lazily)."""
    similarity = similarity_for(config.certainty)
    bias, condition = resolve_bias(config.bias, info, condition=config.edit_prompt or None)
    plan = plan_for(decoder, info.metadata, config, bias)
    d = plan.items
    output_range = info.output_range or (decoder.output_range
                                         if isinstance(decoder, RangedDecoder) else None)
    return Prepared(
        plan=plan, bias=bias, condition=plan.condition or condition,
        indices=config.latent_indices(d),
        names=plan.names or (info.latent_names(d) if plan.kind == "latent" else None),
        output_range=output_range,
        groups=info.metadata.get("groups") if plan.kind == "latent" else None,
        similarity=similarity)


@dataclass
class Measured:
    """One item's measurements and grids (the comparison row only for the disentanglement bias)."""

    evidence: Evidence
    grid: bytes
    comparison: Evidence | None = None
    comparison_grid: bytes | None = None
    partner: int | None = None


def _partners(measured: dict[int, Measured], latent_dim: int) -> dict[int, int]:
    """For each active latent, the most active other latent (clamped in the comparison row)."""
    by_activity = sorted(measured, key=lambda i: -measured[i].evidence.total_change)
    out = {}
    for i, m in measured.items():
        if not m.evidence.active or latent_dim < 2:
            continue
        others = [j for j in by_activity if j != i and measured[j].evidence.active]
        out[i] = others[0] if others else (i + 1) % latent_dim
    return out


def select_top_k(measured: dict[int, Measured], k: int | None) -> set[int]:
    """The active items to explain: all, or the ``k`` with the largest measured total_change."""
    active = sorted((i for i, m in measured.items() if m.evidence.active),
                    key=lambda i: (-measured[i].evidence.total_change, i))
    return set(active if k is None else active[:k])


def measure_latents(
    decoder: Decoder, config: ExplainConfig, indices: tuple[int, ...], *, bias: str,
    output_range: tuple[float, float] | None, progress: bool = True,
    restored: Restored | None = None, checkpoint: Checkpoint | None = None,
    plan: Plan | None = None,
) -> tuple[dict[int, Measured], tuple[float, float], tuple[float, ...]]:
    """Decode every traversal (and comparison rows), measure it and render its grid.

    Frames live one decode group at a time; only evidence and PNG grids are kept. Items in
    ``restored`` (an earlier attempt's checkpoint) are not decoded again; new ones are handed to
    ``checkpoint`` as they finish. Comparison rows are decoded only for the items to explain
    (``config.top_k``). ``plan`` says what an index moves (by default the decoder's own plan or
    one latent at a time).
    """
    restored = restored or Restored()
    if plan is None:
        plan = plan_for(decoder, {}, config, bias)
    per = plan.rows * plan.steps
    comparisons = bias == "disentanglement" and plan.items > 1
    measured = {i: Measured(*restored.measured[i]) for i in indices if i in restored.measured}
    todo = [i for i in indices if i not in measured]
    with progress_bar(len(todo) * per, "decode", progress) as bar:
        batch = BatchDecoder(decoder, batch_size=config.batch_size,
                             output_range=output_range or restored.output_range,
                             on_batch=bar.update)
        for t in decode_traversals(batch, plan.codes, todo, plan.rows, plan.values):
            ev = measure_traversal(t.index, t.frames)
            measured[t.index] = Measured(ev, png_bytes(traversal_grid(t.frames, plan.values)))
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
            per_chunk = max(1, config.batch_size // (2 * plan.steps))
            for g in range(0, len(order), per_chunk):
                chunk = order[g : g + per_chunk]
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


def build_requests(measured: dict[int, Measured], prepared: Prepared,
                   config: ExplainConfig) -> list[ExplainRequest]:
    """One request per chosen active item (``config.top_k``; inactive ones are never shown to an
    explainer), each naming what it moves and the unit of its column values."""
    plan = prepared.plan
    d = plan.items
    group_of = {int(i): tuple(int(j) for j in g) for g in (prepared.groups or ()) for i in g}
    group_of.update(dict(enumerate(plan.members or ())))
    conditions = dict(enumerate(plan.conditions or ()))
    chosen = select_top_k(measured, config.top_k)
    return [
        ExplainRequest(
            index=i, label=names.latent_label(i, d), bias=prepared.bias, values=plan.values,
            grid_png=m.grid, evidence=m.evidence, samples=config.samples,
            name=prepared.names[i] if prepared.names else None,
            condition=conditions.get(i, prepared.condition),
            comparison_png=m.comparison_grid, comparison_evidence=m.comparison,
            group=group_of.get(i), kind=plan.kind, unit=plan.unit,
        )
        for i, m in measured.items() if m.evidence.active and i in chosen
    ]


def latent_prepared(latent_dim: int, config: ExplainConfig, bias: str = "disentanglement",
                    condition: str | None = None) -> Prepared:
    """What :func:`prepare` gives a plain decoder of ``latent_dim`` latents with no metadata
    (one latent at a time), under ``bias``: for callers that measure once and ask several ways."""
    from lexflow.stages.plan import TraversalPlan

    return Prepared(plan=TraversalPlan.from_config(latent_dim, config), bias=bias,
                    condition=condition, indices=config.latent_indices(latent_dim), names=None,
                    output_range=None, groups=None, similarity=similarity_for(config.certainty))


def explain_measured(explainer: Explainer, measured: dict[int, Measured], prepared: Prepared,
                     config: ExplainConfig, *, progress: bool = False,
                     restored: Restored | None = None, checkpoint: Checkpoint | None = None,
                     ) -> dict[int, ExplainResponse]:
    """Ask ``explainer`` about the chosen active items of ``measured``: the requests of
    :func:`build_requests`, answered by :func:`run_explainer`."""
    return run_explainer(explainer, build_requests(measured, prepared, config),
                         progress=progress, restored=restored, checkpoint=checkpoint)


def requests_for(decoder: Decoder, info: ModelInfo, config: ExplainConfig, *,
                 prepared: Prepared | None = None, progress: bool = False,
                 ) -> tuple[ExplainRequest, ...]:
    """The requests :func:`explain_decoder` would send for this decoder and config (the dry run
    asks for them: it decodes and measures, and sends nothing)."""
    prepared = prepared or prepare(decoder, info, config)
    measured, _, _ = measure_latents(
        decoder, config, prepared.indices, bias=prepared.bias,
        output_range=prepared.output_range, progress=progress, plan=prepared.plan)
    return tuple(build_requests(measured, prepared, config))


def run_explainer(explainer: Explainer, requests: Sequence[ExplainRequest], *,
                  progress: bool = True, restored: Restored | None = None,
                  checkpoint: Checkpoint | None = None) -> dict[int, ExplainResponse]:
    """Ask the explainer about ``requests``; responses in ``restored`` are reused (for the
    requested items), new ones handed to ``checkpoint`` as they arrive."""
    done = dict((restored or Restored()).responses)
    wanted = {r.index for r in requests}
    todo = [r for r in requests if r.index not in done]
    responses = {i: r for i, r in done.items() if i in wanted}
    with progress_bar(len(todo), "explain", progress) as bar:
        for r in explainer.explain_many(todo, on_done=lambda _: bar.update()):
            r = clean_response(r, (getattr(explainer, "_api_key", None),))  # hostile text
            responses[r.index] = r
            if checkpoint:
                checkpoint.add_response(r)
    if checkpoint:
        checkpoint.flush()
    return responses


def latent_result(i: int, prepared: Prepared, m: Measured, resp: ExplainResponse | None,
                  threshold: float, *, skipped: bool = False) -> LatentResult:
    """The record of item ``i``: inactive (no response), skipped (``top_k``), or the consensus
    of its answers (explained, unclear, or failed when every call failed)."""
    plan = prepared.plan
    d = plan.items
    members = dict(enumerate(plan.members or ()))
    conditions = dict(enumerate(plan.conditions or ()))
    common: dict[str, Any] = dict(
        index=i, label=names.latent_label(i, d),
        name=prepared.names[i] if prepared.names else None,
        evidence=m.evidence.to_dict(), image=names.traversal_path(i, d),
        comparison_image=names.traversal_path(i, d, comparison=True) if m.comparison_grid else None,
        comparison_evidence=m.comparison.to_dict() if m.comparison else None, partner=m.partner,
        kind=plan.kind, members=members.get(i), condition=conditions.get(i, plan.condition),
    )
    if skipped:
        return LatentResult(status=SKIPPED, explanation=None, explainable=False, certainty=0.0,
                            answers=(), **common)
    if resp is None:
        return LatentResult(status="inactive", explanation=None, explainable=False,
                            certainty=0.0, answers=(), **common)
    c = consensus(resp.answers, threshold=threshold, similarity=prepared.similarity)
    if resp.failures and not any(a.strip() for a in resp.answers):
        status = "failed"
    else:
        status = "explained" if c.explainable else "unclear"
    details = dict(resp.details)
    flags = tuple(str(f) for f in details.pop("flags", ()))
    return LatentResult(status=status, explanation=c.explanation, explainable=c.explainable,
                        certainty=c.certainty, answers=c.answers, failures=resp.failures,
                        flags=flags, details=details, **common)


def _usage(responses: dict[int, ExplainResponse]) -> dict[str, float]:
    return {
        "calls": float(sum(r.calls for r in responses.values())),
        "input_tokens": float(sum(r.input_tokens for r in responses.values())),
        "output_tokens": float(sum(r.output_tokens for r in responses.values())),
        "cost_usd": float(sum(r.cost_usd for r in responses.values())),
    }


def explain_decoder(
    decoder: Decoder, info: ModelInfo, config: ExplainConfig, explainer: Explainer, *,
    checkpoint: Checkpoint | None = None, prepared: Prepared | None = None,
    progress: bool = False,
) -> ExplainResult:
    """Explain the selected items of ``decoder``: plan, decode, measure, render, ask
    ``explainer``, score certainty. Returns the result with its grids (``images``); the model
    fields and ``run_id`` are empty (the caller that knows them fills them in).

    ``prepared``: from :func:`prepare`, when the caller checked the options before (the MLflow
    job does, so bad options fail before anything is written); ``checkpoint``: where results go
    as they finish and what an earlier attempt left.
    """
    prepared = prepared or prepare(decoder, info, config)
    plan = prepared.plan
    restored = checkpoint.restored if checkpoint else Restored()
    measured, out_range, _ = measure_latents(
        decoder, config, prepared.indices, bias=prepared.bias,
        output_range=prepared.output_range, progress=progress, restored=restored,
        checkpoint=checkpoint, plan=plan)
    responses = explain_measured(explainer, measured, prepared, config, progress=progress,
                                 restored=restored, checkpoint=checkpoint)
    chosen = select_top_k(measured, config.top_k)
    skipped = {i for i in prepared.indices if measured[i].evidence.active and i not in chosen}
    results = {i: latent_result(i, prepared, measured[i], responses.get(i), config.threshold,
                                skipped=i in skipped)
               for i in prepared.indices}
    images: dict[str, bytes] = {}
    for r in results.values():
        images[r.image] = measured[r.index].grid
        grid = measured[r.index].comparison_grid
        if r.comparison_image and grid:
            images[r.comparison_image] = grid
    return ExplainResult(
        model_uri="", model_name=None, model_version=None, run_id="",
        explainer=explainer.uri, explainer_is_mllm=explainer.is_mllm, latent_dim=plan.items,
        config=config.as_params(),
        latents=tuple(r for i, r in results.items() if i not in skipped),
        output_range=out_range, usage=_usage(responses),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        traversal=plan.describe() if plan.kind != "latent" else {},
        skipped=tuple(results[i] for i in prepared.indices if i in skipped),
        images=images,
    )
