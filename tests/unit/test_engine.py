"""lexflow.engine: the one place the stages run. The dry run's requests are the real run's, for
every kind of item (latent, group, CSVAE attribute, diffusion direction) and bias; results carry
skipped items; no MLflow is touched."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

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
