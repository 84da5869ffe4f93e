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
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
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
from lexflow.stages.decode import BatchDecoder, Traversal, decode_groups
from lexflow.stages.evidence import (
    Evidence,
    activity,
    measure_traversals,
    traversals_at_once,
)
from lexflow.stages.plan import Plan, plan_for
from lexflow.stages.readback import ReadBack
from lexflow.stages.render import (
    certainty_chart,
    png_bytes,
    traversal_gif,
    traversal_grid,
    traversal_strip,
)
from lexflow.uncertainty import Consensus, Similarity, consensus, similarity_for, with_readback


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
    strip: bytes | None = None  # small PNG row for people (None when not drawn, or restored)
    animation: bytes | None = None  # animated GIF of the first row
    render_failures: tuple[str, ...] = ()


# The measure stage's drawing thread (grid PNGs, strips, animations) beside the thread that
# decodes and measures, used while the decoder leaves the CPU idle (a GPU, a remote model: the
# thread that calls it is on a CPU for less than DRAW_BESIDE_BELOW of the decode's time,
# lexflow.stages.decode.BatchDecoder.cpu_share): drawing then fills CPU time the decode leaves.
# A decoder that computes on the CPU (torch's or onnxruntime's kernels, which run on the calling
# thread too: a share near 1) has the drawing inline: beside it a drawing thread only contends
# for the cores and the GIL, while beside a decoder that waits it saves the drawing's time
# (benchmarks/overlap.py). The same rule decides whether the next decode group decodes ahead of
# the evidence (:class:`_DecodeAhead`).
PICTURE_THREADS = 1
DRAW_BESIDE_BELOW = 0.5


def _run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
    """``fn(*args, **kwargs)`` run now, in this thread, as a done future (a failure is handed
    over at ``.result()``, as a pool's is)."""
    done: Future[Any] = Future()
    try:
        done.set_result(fn(*args, **kwargs))
    except Exception as exc:
        done.set_exception(exc)
    return done


class _DrawingPlace(Executor):
    """Where the measure stage draws: on a thread while the decoder (``decodes``, the stage's
    BatchDecoder) leaves most cores idle, else inline (see PICTURE_THREADS). Decided at each
    task from the decodes so far; the pictures are the same either way."""

    def __init__(self) -> None:
        self.decodes: BatchDecoder | None = None
        self._pool: ThreadPoolExecutor | None = None

    def beside(self) -> bool:
        busy = self.decodes.cpu_share() if self.decodes else None
        return busy is not None and busy < DRAW_BESIDE_BELOW

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if not self.beside():
            return _run(fn, *args, **kwargs)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=PICTURE_THREADS,
                                            thread_name_prefix="lexflow-draw")
        return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait, cancel_futures=cancel_futures)


class _DecodeAhead(Iterator[Any]):
    """The decode groups (or comparison chunks) of ``groups``, a generator that decodes as it is
    advanced. While the decoder leaves most cores idle (``place.beside()``: a GPU, a remote
    model, the same rule as the drawing), :meth:`start_next` decodes the next one on a thread
    while the caller measures this one: the decoder's wait then overlaps the evidence, and a
    run's first requests go out sooner (benchmarks/overlap.py). Beside a decoder that keeps the
    cores busy it does nothing, and each group decodes when asked for, as before.

    The decoder is only ever called by one thread at a time: the caller starts the next decode
    when it is done with the model for this group (after the encoder's read-back). At most one
    group is decoded ahead, so frames of two groups are held at once. A decode that fails raises
    here, when its group is asked for, as it would have inline. The thread is a daemon: a run
    that stops (an error, Ctrl-C, SIGTERM) while a decode is ahead does not wait for it."""

    _END = object()

    def __init__(self, groups: Iterator[Any], place: _DrawingPlace) -> None:
        self._groups = groups
        self._place = place
        self._ahead: Future[Any] | None = None

    def __next__(self) -> Any:
        if self._ahead is not None:
            ahead, self._ahead = self._ahead, None
            item = ahead.result()
        else:
            item = next(self._groups, self._END)
        if item is self._END:
            raise StopIteration
        return item

    def start_next(self) -> None:
        """Decode the next group on a thread now, if the decoder leaves the cores idle."""
        if self._ahead is not None or not self._place.beside():
            return
        ahead: Future[Any] = Future()

        def decode() -> None:
            ahead.set_running_or_notify_cancel()
            try:
                ahead.set_result(next(self._groups, self._END))
            except BaseException as exc:  # handed over at __next__, as an inline decode raises
                ahead.set_exception(exc)

        threading.Thread(target=decode, name="lexflow-decode", daemon=True).start()
        self._ahead = ahead


def _pictures(frames: np.ndarray, label: str) -> tuple[bytes | None, bytes | None, tuple[str, ...]]:
    """(strip, animation, failures) of one traversal: a picture that cannot be drawn is None and
    named in the failures, and the run goes on (the grid is what explainers need)."""
    drawn: dict[str, bytes] = {}
    failures = []
    for what, draw in (("strip", traversal_strip), ("animation", traversal_gif)):
        try:
            drawn[what] = draw(frames)
        except Exception as exc:  # any drawing failure: a picture is never worth the run
            failures.append(f"latent {label}: could not draw the {what}: "
                            f"{type(exc).__name__}: {exc}")
    return drawn.get("strip"), drawn.get("animation"), tuple(failures)


_Drawing = list[tuple[int, Future[tuple[bytes | None, bytes | None, tuple[str, ...]]]]]


def _finish_pictures(measured: dict[int, Measured], drawing: _Drawing) -> None:
    """Wait for pictures drawing on the pool and keep them with their items."""
    for i, drawn in drawing:
        m = measured[i]
        m.strip, m.animation, m.render_failures = drawn.result()


def _grid_png(frames: np.ndarray, values: tuple[float, ...]) -> bytes:
    """The grid PNG, drawn where the measure stage draws (:class:`_DrawingPlace`)."""
    return png_bytes(traversal_grid(frames, values))


def _redraw_pictures(batch: BatchDecoder, plan: Plan, measured: dict[int, Measured],
                     restored: list[int]) -> None:
    """The strip and animation of items restored from an earlier attempt's checkpoint (which
    keeps evidence and grids, not pictures): both draw only the first row, so only that row is
    decoded again, ``steps`` images per item, in the decoder's batches."""
    if not restored:
        return
    per_chunk = max(1, batch.batch_size // plan.steps)
    for g in range(0, len(restored), per_chunk):
        chunk = restored[g : g + per_chunk]
        imgs = batch.decode(np.concatenate([plan.codes(i)[: plan.steps] for i in chunk]))
        for k, i in enumerate(chunk):
            frames = imgs[k * plan.steps : (k + 1) * plan.steps][None]
            m = measured[i]
            m.strip, m.animation, m.render_failures = _pictures(frames,
                                                                names.latent_label(i, plan.items))


Activity = dict[int, tuple[bool, float]]  # item -> (active, total_change), in the items' order


def _activity(measured: dict[int, Measured]) -> Activity:
    return {i: (m.evidence.active, m.evidence.total_change) for i, m in measured.items()}


def _partners(measured: dict[int, Measured], latent_dim: int) -> dict[int, int]:
    """For each active latent, the most active other latent (clamped in the comparison row)."""
    return _partners_of(_activity(measured), latent_dim)


def _partners_of(act: Activity, latent_dim: int) -> dict[int, int]:
    """:func:`_partners` from each item's (active, total_change)."""
    by_activity = sorted(act, key=lambda i: -act[i][1])
    out = {}
    for i, (active, _) in act.items():
        if not active or latent_dim < 2:
            continue
        others = [j for j in by_activity if j != i and act[j][0]]
        out[i] = others[0] if others else (i + 1) % latent_dim
    return out


def select_top_k(measured: dict[int, Measured], k: int | None) -> set[int]:
    """The active items to explain: all, or the ``k`` with the largest measured total_change."""
    return _top_k_of(_activity(measured), k)


def _top_k_of(act: Activity, k: int | None) -> set[int]:
    """:func:`select_top_k` from each item's (active, total_change)."""
    active = sorted((i for i, (on, _) in act.items() if on), key=lambda i: (-act[i][1], i))
    return set(active if k is None else active[:k])


def measure_latents(
    decoder: Decoder, config: ExplainConfig, indices: tuple[int, ...], *, bias: str,
    output_range: tuple[float, float] | None, progress: bool = True,
    restored: Restored | None = None, checkpoint: Checkpoint | None = None,
    plan: Plan | None = None, on_ready: Callable[[int, dict[int, Measured]], None] | None = None,
) -> tuple[dict[int, Measured], tuple[float, float], tuple[float, ...]]:
    """Decode every traversal (and comparison rows), measure it and render its grid.

    Frames live one decode group at a time; only evidence and PNG grids are kept. Items in
    ``restored`` (an earlier attempt's checkpoint) are not decoded again; new ones are handed to
    ``checkpoint`` as they finish. Comparison rows are decoded only for the items to explain
    (``config.top_k``). ``plan`` says what an index moves (by default the decoder's own plan or
    one latent at a time). A model with an encoder reads each main traversal back
    (:mod:`lexflow.stages.readback`, ``config.readback``) into its evidence.

    ``on_ready(i, measured)`` (``measured``: every item's main traversal, so the ranking for
    ``top_k`` is known) is called once per item as soon as its grid, evidence and comparison row
    are final (after every main traversal, since the comparison partner and
    ``top_k`` need every item's activity; then each comparison chunk as it is decoded), so the
    engine can send an item's requests while later comparison rows decode.
    """
    restored = restored or Restored()
    if plan is None:
        plan = plan_for(decoder, {}, config, bias)
    per = plan.rows * plan.steps
    comparisons = bias == "disentanglement" and plan.items > 1
    measured = {i: Measured(*restored.measured[i]) for i in indices if i in restored.measured}
    todo = [i for i in indices if i not in measured]
    reader = ReadBack.for_run(decoder, config.readback, plan.kind, plan.values)
    restored_activity = _activity(measured)
    found: dict[str, dict[int, int]] = {}  # the comparison partners, once every item is decoded
    with progress_bar(len(todo) * per, "decode", progress) as bar, _DrawingPlace() as pool:
        batch = BatchDecoder(decoder, batch_size=config.batch_size,
                             output_range=output_range or restored.output_range,
                             on_batch=bar.update)
        pool.decodes = batch

        def decoded() -> Iterator[tuple[list[Traversal], list[int], list[np.ndarray]]]:
            """Every decode, in order: the main traversals a group at a time (group, [], []),
            then the comparison rows a chunk at a time ([], items, rows). The partners follow
            from every item's activity, read from the frames as they decode (the values their
            evidence gets), so the first comparison chunk can decode while the last group is
            still being measured."""
            act = dict(restored_activity)
            for group in decode_groups(batch, plan.codes, todo, plan.rows, plan.values):
                act.update((t.index, activity(t.frames)) for t in group)
                yield group, [], []
            if not comparisons:
                return
            ordered = {i: act[i] for i in indices}
            chosen = _top_k_of(ordered, config.top_k)
            partners = {i: j for i, j in _partners_of(ordered, plan.items).items() if i in chosen}
            fresh = {i: j for i, j in partners.items()
                     if not (i in restored.comparisons and restored.comparisons[i][0] == j)}
            found.update(partners=partners, fresh=fresh)
            if fresh:
                bar.total += 2 * plan.steps * len(fresh)
                bar.refresh()
            for chunk, rows in _comparison_chunks(batch, plan, fresh, config.batch_size):
                yield [], chunk, rows

        def main_done(measured: dict[int, Measured]) -> dict[int, Measured]:
            """Every main traversal is measured: the items in the order asked for, with the
            comparisons an earlier attempt kept; items without a comparison to decode are
            ready."""
            if checkpoint:
                checkpoint.flush()
            measured = {i: measured[i] for i in indices}
            fresh = found.get("fresh", {})
            for i, j in found.get("partners", {}).items():
                if i not in fresh:  # the comparison an earlier attempt kept, with this partner
                    _, measured[i].comparison, measured[i].comparison_grid = restored.comparisons[i]
                    measured[i].partner = j
            if on_ready:
                for i in indices:
                    if i not in fresh:
                        on_ready(i, measured)
            return measured

        stream = _DecodeAhead(decoded(), pool)
        pictures: _Drawing = []  # the latest group's pictures, still drawing
        ordered = False
        for group, chunk, rows in stream:
            if group:
                # Beside a decoder that leaves the cores idle the group's grids draw on the pool
                # while its evidence is measured here, and its pictures for people (from a copy
                # of the first row) after them, finishing while the next group or the comparison
                # rows decode: nothing before the end reads them, and only one group's are ever
                # pending (its frames are dropped as before). Beside one that keeps them busy
                # all of it runs here, in the same order.
                grids = [pool.submit(_grid_png, t.frames, plan.values) for t in group]
                drawing = [(t.index, pool.submit(_pictures, t.frames[:1].copy(),
                                                 names.latent_label(t.index, plan.items)))
                           for t in group]
                backs = reader.group(group, batch) if reader else {}
                stream.start_next()  # the model is free: the next decode may run meanwhile
                evidence = measure_traversals([t.index for t in group], [t.frames for t in group])
                for t, ev, png in zip(group, evidence, grids, strict=True):
                    if t.index in backs:
                        ev = replace(ev, readback=backs[t.index])
                    measured[t.index] = Measured(ev, png.result())
                    if checkpoint:
                        checkpoint.output_range = batch.output_range
                        checkpoint.add_measured(t.index, ev, measured[t.index].grid)
                _finish_pictures(measured, pictures)  # the previous group's
                pictures = drawing
                continue
            if not ordered:
                measured, ordered = main_done(measured), True
            stream.start_next()
            grids = [pool.submit(_grid_png, frames, plan.values) for frames in rows]
            # With on_ready, a few rows at a time (as many as the evidence measures at once), so
            # the first requests go out before the whole chunk is measured; the values are the
            # same either way.
            step = traversals_at_once(rows[0].shape) if on_ready else len(chunk)
            for s in range(0, len(chunk), step):
                part = chunk[s : s + step]
                evidence = measure_traversals(part, rows[s : s + step])
                for i, ev, grid in zip(part, evidence, grids[s : s + step], strict=True):
                    m = measured[i]
                    m.comparison = ev
                    m.comparison_grid = grid.result()
                    m.partner = found["fresh"][i]
                    if checkpoint:
                        checkpoint.add_comparison(i, m.partner, ev, m.comparison_grid)
                    if on_ready:
                        on_ready(i, measured)
        if not ordered:
            measured = main_done(measured)
        elif checkpoint:
            checkpoint.flush()
        # Last, when nothing decodes ahead: the model is called by one thread at a time.
        _redraw_pictures(batch, plan, measured, [i for i in indices if i not in todo])
        _finish_pictures(measured, pictures)
    return measured, batch.output_range or (0.0, 1.0), plan.values


def _comparison_chunks(batch: BatchDecoder, plan: Plan, partners: dict[int, int],
                       batch_size: int) -> Iterator[tuple[list[int], list[np.ndarray]]]:
    """The comparison rows of ``partners`` (item -> partner), decoded a batch of items at a time:
    (the items, their rows [2, steps, C, H, W])."""
    order = list(partners)
    per_chunk = max(1, batch_size // (2 * plan.steps))
    for g in range(0, len(order), per_chunk):
        chunk = order[g : g + per_chunk]
        imgs = batch.decode(np.concatenate([plan.comparison_codes(i, partners[i]) for i in chunk]))
        yield chunk, [imgs[k * 2 * plan.steps : (k + 1) * 2 * plan.steps].reshape(
            2, plan.steps, *imgs.shape[1:]) for k in range(len(chunk))]


def build_requests(measured: dict[int, Measured], prepared: Prepared,
                   config: ExplainConfig) -> list[ExplainRequest]:
    """One request per chosen active item (``config.top_k``; inactive ones are never shown to an
    explainer), each naming what it moves and the unit of its column values."""
    chosen = select_top_k(measured, config.top_k)
    return [request_for(i, m, prepared, config)
            for i, m in measured.items() if m.evidence.active and i in chosen]


def request_for(i: int, m: Measured, prepared: Prepared, config: ExplainConfig) -> ExplainRequest:
    """The request about item ``i`` (one place builds it, so the streamed requests of
    :func:`explain_decoder` are the ones :func:`build_requests` lists)."""
    plan = prepared.plan
    d = plan.items
    group_of = {int(k): tuple(int(j) for j in g) for g in (prepared.groups or ()) for k in g}
    group_of.update(dict(enumerate(plan.members or ())))
    conditions = dict(enumerate(plan.conditions or ()))
    return ExplainRequest(
        index=i, label=names.latent_label(i, d), bias=prepared.bias, values=plan.values,
        grid_png=m.grid, evidence=m.evidence, samples=config.samples,
        name=prepared.names[i] if prepared.names else None,
        condition=conditions.get(i, prepared.condition),
        comparison_png=m.comparison_grid, comparison_evidence=m.comparison,
        group=group_of.get(i), kind=plan.kind, unit=plan.unit,
    )


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


def run_explainer(explainer: Explainer, requests: Iterable[ExplainRequest], *,
                  progress: bool = True, restored: Restored | None = None,
                  checkpoint: Checkpoint | None = None,
                  total: int | None = None,
                  on_response: Callable[[ExplainResponse], None] | None = None,
                  ) -> dict[int, ExplainResponse]:
    """Ask the explainer about ``requests``; responses in ``restored`` are reused (for the
    requested items), new ones handed to ``checkpoint`` and to ``on_response`` as they arrive
    (on this thread, while the explainer's other calls are in flight).

    ``requests`` may be a stream (a generator the engine feeds while it decodes): it is read
    lazily, so the explainer's calls start with the first request; ``total`` then sizes the
    progress bar.
    """
    done = dict((restored or Restored()).responses)
    responses: dict[int, ExplainResponse] = {}

    def todo() -> Iterator[ExplainRequest]:
        for r in requests:
            if r.index in done:
                responses[r.index] = done[r.index]
            else:
                yield r

    if isinstance(requests, Sequence):
        total = sum(r.index not in done for r in requests)
    with progress_bar(total or 0, "explain", progress) as bar:
        stream = todo()
        many = explainer.explain_many(
            stream if not isinstance(requests, Sequence) else list(stream),
            on_done=lambda _: bar.update())
        for r in many:
            r = clean_response(r, (getattr(explainer, "_api_key", None),))  # hostile text
            responses[r.index] = r
            if checkpoint:
                checkpoint.add_response(r)
            if on_response:
                on_response(r)
    if checkpoint:
        checkpoint.flush()
    return responses


def latent_result(i: int, prepared: Prepared, m: Measured, resp: ExplainResponse | None,
                  threshold: float, *, skipped: bool = False,
                  agreement: Consensus | None = None) -> LatentResult:
    """The record of item ``i``: inactive (no response), skipped (``top_k``), or the consensus
    of its answers (explained, unclear, or failed when every call failed). ``agreement``: that
    consensus (:func:`agreement_of`) when it was scored as the response arrived."""
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
        strip=names.strip_path(i, d) if m.strip else None,
        animation=names.animation_path(i, d) if m.animation else None,
        readback=m.evidence.readback,
    )
    if skipped:
        return LatentResult(status=SKIPPED, explanation=None, explainable=False, certainty=0.0,
                            answers=(), **common)
    if resp is None:
        return LatentResult(status="inactive", explanation=None, explainable=False,
                            certainty=0.0, answers=(), **common)
    if agreement is None:
        agreement = agreement_of(resp, prepared, threshold)
    c = with_readback(agreement, m.evidence.readback, threshold)
    if resp.failures and not any(a.strip() for a in resp.answers):
        status = "failed"
    else:
        status = "explained" if c.explainable else "unclear"
    details = dict(resp.details)
    flags = tuple(str(f) for f in details.pop("flags", ()))
    return LatentResult(status=status, explanation=c.explanation, explainable=c.explainable,
                        certainty=c.certainty, answers=c.answers, failures=resp.failures,
                        flags=flags, details=details, agreement=agreement.certainty, **common)


def agreement_of(resp: ExplainResponse, prepared: Prepared, threshold: float) -> Consensus:
    """How far an item's answers agree (the run's certainty measure, ``prepared.similarity``)."""
    return consensus(resp.answers, threshold=threshold, similarity=prepared.similarity)


def _usage(responses: dict[int, ExplainResponse]) -> dict[str, float]:
    return {
        "calls": float(sum(r.calls for r in responses.values())),
        "input_tokens": float(sum(r.input_tokens for r in responses.values())),
        "output_tokens": float(sum(r.output_tokens for r in responses.values())),
        "cost_usd": float(sum(r.cost_usd for r in responses.values())),
        "images": float(sum(r.images for r in responses.values())),
    }


_END = object()


def _measure_and_explain(
    decoder: Decoder, config: ExplainConfig, prepared: Prepared, explainer: Explainer, *,
    progress: bool, restored: Restored, checkpoint: Checkpoint | None,
) -> tuple[dict[int, Measured], tuple[float, float], dict[int, ExplainResponse],
           dict[int, Consensus]]:
    """Decode and measure on this thread while the explainer answers on another: an item's
    request goes out once its grid, evidence and comparison row are final (``on_ready``), within
    the explainer's concurrency limit. The requests are :func:`build_requests`' (same
    :func:`request_for`, same ``top_k``), so answers and cache keys do not change. On a decode
    error the requests already sent finish (checkpointed: a rerun resumes), then it is raised.

    Each new response's agreement (:func:`agreement_of`) is scored as it arrives, while the
    other calls are in flight, so little is left after the last answer (the certainty measure's
    first use, its model or its imports, and one embedding per item for ``semantic``).
    """
    ready: queue.Queue[Any] = queue.Queue()
    box: dict[str, Any] = {}
    agreements: dict[int, Consensus] = {}

    def scored(r: ExplainResponse) -> None:
        # A failure here is not the run's: latent_result scores the item again and its error
        # is reported as before, after every answer is in and checkpointed.
        with suppress(Exception):
            agreements[r.index] = agreement_of(r, prepared, config.threshold)

    def on_ready(i: int, measured: dict[int, Measured]) -> None:
        if "chosen" not in box:  # every main traversal is measured by the first call
            box["chosen"] = select_top_k(measured, config.top_k)
        if measured[i].evidence.active and i in box["chosen"] and "error" not in box:
            ready.put(request_for(i, measured[i], prepared, config))

    def stream() -> Iterator[ExplainRequest]:
        while (item := ready.get()) is not _END:
            yield item

    def answer() -> None:
        try:
            box["responses"] = run_explainer(explainer, stream(), progress=progress,
                                             restored=restored, checkpoint=checkpoint,
                                             on_response=scored)
        except BaseException as exc:  # handed to the calling thread; nothing more is sent
            box["error"] = exc

    worker = threading.Thread(target=answer, name="lexflow-explain", daemon=True)
    worker.start()
    try:
        measured, out_range, _ = measure_latents(
            decoder, config, prepared.indices, bias=prepared.bias,
            output_range=prepared.output_range, progress=progress, restored=restored,
            checkpoint=checkpoint, plan=prepared.plan,
            on_ready=on_ready)
    finally:
        ready.put(_END)
        worker.join()
    if "error" in box:
        raise box["error"]
    return measured, out_range, box["responses"], agreements


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
    measured, out_range, responses, agreements = _measure_and_explain(
        decoder, config, prepared, explainer, progress=progress, restored=restored,
        checkpoint=checkpoint)
    chosen = select_top_k(measured, config.top_k)
    skipped = {i for i in prepared.indices if measured[i].evidence.active and i not in chosen}
    results = {i: latent_result(i, prepared, measured[i], responses.get(i), config.threshold,
                                skipped=i in skipped, agreement=agreements.get(i))
               for i in prepared.indices}
    images: dict[str, bytes] = {}
    failures: list[str] = []
    for r in results.values():
        m = measured[r.index]
        images[r.image] = m.grid
        if r.comparison_image and m.comparison_grid:
            images[r.comparison_image] = m.comparison_grid
        if r.strip and m.strip:
            images[r.strip] = m.strip
        if r.animation and m.animation:
            images[r.animation] = m.animation
        failures.extend(m.render_failures)
    try:
        images[names.CERTAINTY_CHART] = certainty_chart(
            [(r.label, r.certainty, r.status) for r in results.values()], config.threshold)
    except Exception as exc:  # a chart is never worth the run
        failures.append(f"could not draw the certainty chart: {type(exc).__name__}: {exc}")
    return ExplainResult(
        model_uri="", model_name=None, model_version=None, run_id="",
        explainer=explainer.uri, explainer_is_mllm=explainer.is_mllm, latent_dim=plan.items,
        config=config.as_params(),
        latents=tuple(r for i, r in results.items() if i not in skipped),
        output_range=out_range, usage=_usage(responses),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        traversal=plan.describe() if plan.kind != "latent" else {},
        skipped=tuple(results[i] for i in prepared.indices if i in skipped),
        images=images, render_failures=tuple(failures),
    )
