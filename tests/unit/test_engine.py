"""lexflow.engine: the one place the stages run. The dry run's requests are the real run's, for
every kind of item (latent, group, CSVAE attribute, diffusion direction) and bias; results carry
skipped items; no MLflow is touched."""

from __future__ import annotations

import os
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
    """The blob decoder behind a 20 ms wait a batch, as a decoder on a GPU or a server leaves
    the cores idle while it decodes."""

    def __init__(self) -> None:
        self._on_cpu = PyTorchVAEAdapter(BlobDecoder(), device="cpu")

    def decode(self, z: Any) -> Any:
        time.sleep(0.02)
        return self._on_cpu.decode(z)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._on_cpu, name)


class _Spinning(_Waiting):
    """The same, computing on this thread for 20 ms a batch instead (one core busy)."""

    def decode(self, z: Any) -> Any:
        end = time.process_time() + 0.02
        while time.process_time() < end:
            pass
        return self._on_cpu.decode(z)


def test_cores_busy_tells_a_decoder_that_waits_from_one_that_computes() -> None:
    from lexflow.stages.decode import BatchDecoder

    cores = len(os.sched_getaffinity(0))
    z = np.zeros((8, 5), np.float32)
    waits, spins = BatchDecoder(_Waiting(), batch_size=4), BatchDecoder(_Spinning(), batch_size=4)
    assert waits.cores_busy() is None
    waits.decode(z)
    spins.decode(z)
    assert waits.cores_busy() < 0.25 / cores  # a few ms of torch in 20 ms waits
    assert spins.cores_busy() > 0.4 / cores  # one core, less what a loaded machine takes
    assert spins.cores_busy() > 4 * waits.cores_busy()


@pytest.mark.parametrize("busy, beside", [(None, False), (0.05, True), (0.34, True),
                                          (0.35, False), (0.5, False), (1.0, False)])
def test_drawing_goes_beside_a_decoder_that_leaves_the_cores_idle(busy: float | None,
                                                                  beside: bool) -> None:
    class Decodes:
        def cores_busy(self) -> float | None:
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
    monkeypatch.setattr(engine, "DRAW_BESIDE_BELOW", 0.35)
    pooled = engine.measure_latents(_Waiting(), config, indices, bias="disentanglement",
                                    output_range=None, progress=False)[0]
    assert threads and all(t.startswith("lexflow-draw") for t in threads)
    for i in indices:
        a, b = inline[i], pooled[i]
        assert (a.grid, a.strip, a.animation, a.comparison_grid, a.partner) == (
            b.grid, b.strip, b.animation, b.comparison_grid, b.partner)
        assert a.evidence == b.evidence and a.comparison == b.comparison
        assert a.strip and a.animation
