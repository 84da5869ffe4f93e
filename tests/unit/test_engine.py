"""lexflow.engine: the one place the stages run. The dry run's requests are the real run's, for
every kind of item (latent, group, CSVAE attribute, diffusion direction) and bias; results carry
skipped items; no MLflow is touched."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.blob import BlobDecoder  # noqa: E402
from models.csvae import BlobCSVAE  # noqa: E402

from lexflow import engine  # noqa: E402
from lexflow.adapters.base import ModelInfo  # noqa: E402
from lexflow.adapters.pytorch_vae import PyTorchVAEAdapter  # noqa: E402
from lexflow.config import ExplainConfig  # noqa: E402
from lexflow.explainers.base import Explainer, ExplainRequest, ExplainResponse  # noqa: E402


class Recorder(Explainer):
    """Answers like a fixed oracle and keeps every request it was sent."""

    scheme = "recorder"
    is_mllm = False

    def __init__(self) -> None:
        super().__init__("recorder")
        self.sent: list[ExplainRequest] = []

    def explain(self, request: ExplainRequest) -> ExplainResponse:
        self.sent.append(request)
        return ExplainResponse(request.index, ("moves the object",) * request.samples)

    def explain_many(self, requests: Sequence[ExplainRequest], *,
                     on_done: Callable[[ExplainResponse], None] | None = None,
                     ) -> Iterator[ExplainResponse]:
        yield from super().explain_many(requests, on_done=on_done)


def _blob(metadata: dict[str, Any]) -> tuple[Any, ModelInfo]:
    return PyTorchVAEAdapter(BlobDecoder(), device="cpu"), ModelInfo(("pytorch",), metadata)


def _csvae() -> tuple[Any, ModelInfo]:
    direction = [0.0, 0.0, 1.5, 0.0, 0.0]
    return (PyTorchVAEAdapter(BlobCSVAE(), device="cpu"),
            ModelInfo(("pytorch",), {"bias": "conditional", "attributes": {"large": direction}}))


def _diffusion() -> tuple[Any, ModelInfo]:
    pytest.importorskip("diffusers")
    from models.tiny_diffusion import FAST, tiny_ddim

    from lexflow.adapters.diffusers_pipeline import DiffusionPipelineAdapter

    metadata = {"diffusion": FAST}
    return (DiffusionPipelineAdapter(tiny_ddim(), device="cpu", metadata=metadata),
            ModelInfo(("diffusers_pipeline",), metadata))


CASES = {
    "latent": (lambda: _blob({}), ExplainConfig(rows=2, samples=2), "latent", "prior std"),
    "latent-top-k": (lambda: _blob({}), ExplainConfig(rows=2, samples=2, top_k=2), "latent",
                     "prior std"),
    "latent-conditional": (lambda: _blob({"bias": "conditional", "condition": "a red blob"}),
                           ExplainConfig(rows=2, samples=2), "latent", "prior std"),
    "group": (lambda: _blob({"bias": "combination", "groups": [[0, 1], [2, 3]]}),
              ExplainConfig(rows=2, samples=2), "group", "prior std"),
    "attribute": (_csvae, ExplainConfig(rows=2, samples=2), "attribute",
                  "multiples of the attribute direction"),
    "direction": (_diffusion, ExplainConfig(directions=2, rows=1, steps=3, samples=2,
                                            edit_prompt=""), "direction", "guidance steps"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_dry_run_requests_equal_the_real_runs(case: str) -> None:
    make, config, kind, unit = CASES[case]
    decoder, info = make()
    planned = engine.requests_for(decoder, info, config)
    recorder = Recorder()
    result = engine.explain_decoder(decoder, info, config, recorder)
    assert planned and list(planned) == recorder.sent
    assert {r.kind for r in planned} == {kind} and {r.unit for r in planned} == {unit}
    assert {r.kind for r in result.latents} == {kind}
    if case == "group":
        assert [r.group for r in planned] == [(0, 1), (2, 3)]  # one request per group, not latent
    if case == "attribute":
        assert [r.condition for r in planned] == ["attribute label 'large' (y = 1)"]
    if case == "latent-top-k":
        assert len(planned) == 2 and len(result.skipped) == 2
        assert {r.status for r in result.skipped} == {"skipped"}


def test_result_reads_back_and_gives_the_metrics() -> None:
    from lexflow import names
    from lexflow.record import ExplainResult

    decoder, info = _blob({})
    result = engine.explain_decoder(decoder, info, ExplainConfig(rows=2, samples=2, top_k=1),
                                    Recorder())
    back = ExplainResult.from_dict(result.to_dict())
    assert back == result  # images are not part of the record
    assert back.to_dict() == result.to_dict()
    metrics = result.metrics()
    assert metrics[names.METRIC_SKIPPED_LATENTS] == 3.0
    assert metrics[names.METRIC_ACTIVE_LATENTS] == 1.0
    items = result.latents + result.skipped
    assert set(result.images) == {r.image for r in items} | {
        r.comparison_image for r in result.latents if r.comparison_image} | {
        r.strip for r in items} | {r.animation for r in items} | {names.CERTAINTY_CHART}
    assert metrics[names.METRIC_IMAGES] == 0.0  # the recorder sends no images


def test_from_dict_rejects_another_schema() -> None:
    from lexflow.errors import ConfigError
    from lexflow.record import ExplainResult

    with pytest.raises(ConfigError, match="not a lexflow explanations.json"):
        ExplainResult.from_dict({"schema": "other/1"}, "x.json")
    with pytest.raises(ConfigError, match="x.json: a malformed"):
        ExplainResult.from_dict({"schema": "lexflow.explanations/1"}, "x.json")


def test_bad_options_fail_in_prepare_before_anything_is_decoded() -> None:
    from lexflow.errors import ConfigError

    decoder, info = _blob({"bias": "combination"})
    with pytest.raises(ConfigError, match="needs groups"):
        engine.prepare(decoder, info, ExplainConfig())


def test_restored_items_get_the_same_strip_and_animation_as_a_fresh_run() -> None:
    """A resumed run keeps evidence and grids from its checkpoint; the pictures for people
    (registry strip, GIF) are drawn again from the first row, identical to a fresh run's."""
    decoder = PyTorchVAEAdapter(BlobDecoder(), device="cpu")
    config = ExplainConfig(rows=2, steps=5, device="cpu")
    indices = tuple(range(decoder.latent_dim))
    fresh, out_range, _ = engine.measure_latents(decoder, config, indices, bias="disentanglement",
                                                 output_range=None, progress=False)
    restored = engine.Restored(measured={i: (fresh[i].evidence, fresh[i].grid) for i in (0, 2)},
                               output_range=out_range)
    resumed, _, _ = engine.measure_latents(decoder, config, indices, bias="disentanglement",
                                           output_range=None, progress=False, restored=restored)
    for i in indices:
        assert resumed[i].strip and resumed[i].animation, i
        assert resumed[i].strip == fresh[i].strip and resumed[i].animation == fresh[i].animation
        assert resumed[i].grid == fresh[i].grid and resumed[i].render_failures == ()


class _Waiting:
    """The blob decoder behind a 50 ms wait a batch (as in benchmarks/overlap.py), as a decoder
    on a GPU or a server leaves the cores idle while it decodes."""

    def __init__(self) -> None:
        self._on_cpu = PyTorchVAEAdapter(BlobDecoder(), device="cpu")

    def decode(self, z: Any) -> Any:
        time.sleep(0.05)
        return self._on_cpu.decode(z)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._on_cpu, name)


class _Spinning(_Waiting):
    """The same, computing on this thread for 50 ms a batch instead (one core busy)."""

    def decode(self, z: Any) -> Any:
        end = time.thread_time() + 0.05
        while time.thread_time() < end:
            pass
        return self._on_cpu.decode(z)


def test_cpu_share_tells_a_decoder_that_waits_from_one_that_computes() -> None:
    from lexflow.stages.decode import BatchDecoder

    z = np.zeros((8, 5), np.float32)
    waits, spins = BatchDecoder(_Waiting(), batch_size=4), BatchDecoder(_Spinning(), batch_size=4)
    assert waits.cpu_share() is None
    waits.decode(z)
    spins.decode(z)
    assert waits.cpu_share() < 0.25  # a few ms of torch in 50 ms waits
    assert spins.cpu_share() > 0.4  # the whole decode, less what a loaded machine takes
    assert spins.cpu_share() > 4 * waits.cpu_share()


def test_work_on_other_threads_during_a_decode_is_not_the_decoders() -> None:
    """A decoder that waits stays one that waits while other threads of the process compute
    (the evidence beside a group decoded ahead, an explainer opening its client): counted as
    the decoder's, their CPU time would turn its decode ahead and drawing thread off."""
    from lexflow.stages.decode import BatchDecoder

    stop = threading.Event()

    def compute() -> None:
        while not stop.is_set():
            sum(range(1000))

    other = threading.Thread(target=compute)
    batch = BatchDecoder(_Waiting(), batch_size=4)
    cpu = time.process_time()
    other.start()
    try:
        batch.decode(np.zeros((8, 5), np.float32))
    finally:
        stop.set()
        other.join()
    process_share = (time.process_time() - cpu) / batch.decode_seconds
    assert process_share > 0.5  # the other thread did compute meanwhile
    assert batch.cpu_share() < 0.25 < engine.DRAW_BESIDE_BELOW


@pytest.mark.parametrize("busy, beside", [(None, False), (0.05, True), (0.49, True),
                                          (0.5, False), (1.0, False)])
def test_drawing_goes_beside_a_decoder_that_leaves_the_cores_idle(busy: float | None,
                                                                  beside: bool) -> None:
    class Decodes:
        def cpu_share(self) -> float | None:
            return busy

    with engine._DrawingPlace() as place:
        place.decodes = Decodes()  # type: ignore[assignment]
        where = place.submit(lambda: threading.current_thread().name).result()
    assert where.startswith("lexflow-draw") is beside
    assert where == threading.current_thread().name or beside


def test_inline_drawing_hands_a_failure_over_at_result_as_a_pool_does() -> None:
    failed = engine._run(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failed.result()
    assert engine._run(lambda x: x + 1, 1).result() == 2


def test_the_measure_stage_gives_the_same_grids_pictures_and_evidence_inline_or_on_a_thread(
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = ExplainConfig(rows=2, steps=5, device="cpu")
    indices = tuple(range(5))
    threads: set[str] = set()
    grid_png = engine._grid_png

    def drawn_where(*args: Any) -> Any:
        threads.add(threading.current_thread().name)
        return grid_png(*args)

    monkeypatch.setattr(engine, "_grid_png", drawn_where)
    monkeypatch.setattr(engine, "DRAW_BESIDE_BELOW", 0.0)  # inline, whatever the decoder
    inline = engine.measure_latents(_Waiting(), config, indices, bias="disentanglement",
                                    output_range=None, progress=False)[0]
    assert threads == {threading.current_thread().name}
    threads.clear()
    monkeypatch.setattr(engine, "DRAW_BESIDE_BELOW", 0.5)
    pooled = engine.measure_latents(_Waiting(), config, indices, bias="disentanglement",
                                    output_range=None, progress=False)[0]
    assert threads and all(t.startswith("lexflow-draw") for t in threads)
    for i in indices:
        a, b = inline[i], pooled[i]
        assert (a.grid, a.strip, a.animation, a.comparison_grid, a.partner) == (
            b.grid, b.strip, b.animation, b.comparison_grid, b.partner)
        assert a.evidence == b.evidence and a.comparison == b.comparison
        assert a.strip and a.animation


class _Logged(_Waiting):
    """A waiting decoder that logs each decode: (thread, start, end); it fails the test if two
    threads ever call it at once."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, float, float]] = []
        self._busy = threading.Lock()

    def decode(self, z: Any) -> Any:
        assert self._busy.acquire(blocking=False), "the decoder was called by two threads at once"
        try:
            start = time.perf_counter()
            out = super().decode(z)
            self.calls.append((threading.current_thread().name, start, time.perf_counter()))
            return out
        finally:
            self._busy.release()


def _measure_logged(monkeypatch: pytest.MonkeyPatch, beside_below: float,
                    ) -> tuple[dict[int, Any], _Logged, list[tuple[float, float]], list[int]]:
    """The measure stage on a waiting decoder in groups of two items: its results, the decoder's
    log, the evidence's (start, end) times and the order of on_ready."""
    monkeypatch.setattr(engine, "DRAW_BESIDE_BELOW", beside_below)
    measuring: list[tuple[float, float]] = []
    measure = engine.measure_traversals

    def timed(*args: Any) -> Any:
        start = time.perf_counter()
        out = measure(*args)
        measuring.append((start, time.perf_counter()))
        return out

    monkeypatch.setattr(engine, "measure_traversals", timed)
    decoder = _Logged()
    ready: list[int] = []
    config = ExplainConfig(rows=2, steps=5, device="cpu", batch_size=20)  # 2 items a batch
    measured = engine.measure_latents(decoder, config, tuple(range(5)), bias="disentanglement",
                                      output_range=None, progress=False,
                                      on_ready=lambda i, _: ready.append(i))[0]
    return measured, decoder, measuring, ready


def test_the_next_group_decodes_while_this_one_is_measured_beside_a_decoder_that_waits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Beside a decoder that leaves the cores idle, the next decode group (and, once every item's
    activity is known, the first comparison chunk) decodes on a thread while the evidence of the
    one before is measured: the decoder's wait overlaps the measuring, one call at a time. Beside
    a busy one every decode runs when asked for. The results and the order of on_ready are the
    same either way."""
    inline, plain, _, ready_inline = _measure_logged(monkeypatch, 0.0)
    assert {name for name, _, _ in plain.calls} == {threading.current_thread().name}
    ahead, logged, measuring, ready_ahead = _measure_logged(monkeypatch, 0.5)
    on_thread = [(s, e) for name, s, e in logged.calls if name.startswith("lexflow-decode")]
    assert len(on_thread) >= 3, logged.calls  # 3 main groups + 3 comparison chunks, first inline
    assert any(s < m_end and m_start < e for s, e in on_thread for m_start, m_end in measuring)
    assert len(logged.calls) == len(plain.calls)
    assert ready_ahead == ready_inline and sorted(ready_ahead) == list(range(5))
    for i in range(5):
        a, b = inline[i], ahead[i]
        assert (a.grid, a.strip, a.animation, a.comparison_grid, a.partner) == (
            b.grid, b.strip, b.animation, b.comparison_grid, b.partner)
        assert a.evidence == b.evidence and a.comparison == b.comparison


def test_comparison_items_are_ready_a_few_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """With on_ready, a comparison chunk is measured as many rows at a time as the evidence
    measures at once, and each item is ready as soon as its rows are: the first requests go
    out before the whole chunk is measured."""
    from lexflow.stages import evidence

    monkeypatch.setattr(evidence, "EVIDENCE_PIXELS", 2 * 10 * 32 * 32)  # two comparison rows
    events: list[tuple[str, Any]] = []
    measure = engine.measure_traversals

    def logged(indices: Any, frames: Any) -> Any:
        events.append(("measure", tuple(indices)))
        return measure(indices, frames)

    monkeypatch.setattr(engine, "measure_traversals", logged)
    decoder = PyTorchVAEAdapter(BlobDecoder(latent_dim=8), device="cpu")
    config = ExplainConfig(rows=2, steps=5, device="cpu")
    engine.measure_latents(decoder, config, tuple(range(8)), bias="disentanglement",
                           output_range=None, progress=False,
                           on_ready=lambda i, _: events.append(("ready", i)))
    assert evidence.traversals_at_once((2, 5, 3, 32, 32)) == 2
    parts = [ix for kind, ix in events if kind == "measure"][1:]  # after the main traversals
    assert len(parts) > 1 and all(len(p) <= 2 for p in parts), events
    first_ready = next(k for k, (kind, i) in enumerate(events)
                       if kind == "ready" and i in parts[0])
    last_measure = max(k for k, (kind, _) in enumerate(events) if kind == "measure")
    assert first_ready < last_measure


def test_a_run_that_fails_does_not_wait_for_a_decode_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that stops (here the evidence raises; Ctrl-C and SIGTERM unwind the same way) while
    the next group decodes ahead raises at once: the decode thread is a daemon, left to finish
    on its own, not waited for (a remote decoder may hang for its timeout)."""
    release = threading.Event()

    class Stuck(_Waiting):
        calls = 0

        def decode(self, z: Any) -> Any:
            type(self).calls += 1
            if type(self).calls > 1:  # every decode after the first hangs until released
                release.wait(30)
            return super().decode(z)

    def fails(*args: Any) -> Any:
        time.sleep(0.1)  # the next decode is under way by now
        raise RuntimeError("the evidence failed")

    monkeypatch.setattr(engine, "DRAW_BESIDE_BELOW", 0.5)
    monkeypatch.setattr(engine, "measure_traversals", fails)
    config = ExplainConfig(rows=2, steps=5, device="cpu", batch_size=20)
    start = time.perf_counter()
    try:
        with pytest.raises(RuntimeError, match="the evidence failed"):
            engine.measure_latents(Stuck(), config, tuple(range(5)), bias="disentanglement",
                                   output_range=None, progress=False)
        took = time.perf_counter() - start
        ahead = [t for t in threading.enumerate() if t.name == "lexflow-decode"]
        assert Stuck.calls == 2 and ahead and all(t.daemon for t in ahead)
        assert took < 5, took
    finally:
        release.set()
    for t in ahead:
        t.join(10)
        assert not t.is_alive()
