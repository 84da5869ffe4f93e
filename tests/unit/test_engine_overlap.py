"""Decode overlapped with the explainer (issue 14): explain_decoder sends an item's request as soon
as its grid, evidence and comparison row are ready, while later comparison rows still decode; the
requests and the order of the results are those of the measure-then-ask path; an explainer error
is raised, not hung on."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.blob import BlobDecoder  # noqa: E402

from lexflow import engine  # noqa: E402
from lexflow.adapters.base import ModelInfo  # noqa: E402
from lexflow.adapters.pytorch_vae import PyTorchVAEAdapter  # noqa: E402
from lexflow.config import ExplainConfig  # noqa: E402
from lexflow.errors import ExplainerError  # noqa: E402
from lexflow.explainers.base import Explainer, ExplainRequest, ExplainResponse  # noqa: E402
from lexflow.uncertainty import bow_similarity, consensus  # noqa: E402

# rows x steps = 10 codes a latent; a batch of 10 holds one comparison row (2 x 5 codes), so the
# four active BlobDecoder latents' comparison rows are four separate decoder calls.
CONFIG = ExplainConfig(rows=2, steps=5, samples=2, batch_size=10, bias="disentanglement")


class Gated(PyTorchVAEAdapter):
    """Holds the last comparison batch until ``first_request`` is set (or 20 s): the explainer
    has its first request, or an answer is scored."""

    def __init__(self, first_request: threading.Event) -> None:
        super().__init__(BlobDecoder(), device="cpu")
        self.first_request = first_request
        self.calls = 0
        self.waited: bool | None = None

    def decode(self, z: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls == 5 + 4:  # 5 main traversals, then the 4th comparison row
            self.waited = self.first_request.wait(timeout=20)
        return super().decode(z)


class Streaming(Explainer):
    """Answers at once; notes when the first request arrives (the base class reads lazily)."""

    scheme = "streaming"
    is_mllm = False

    def __init__(self, fail: bool = False) -> None:
        super().__init__("streaming")
        self.first = threading.Event()
        self.sent: list[ExplainRequest] = []
        self.fail = fail

    def explain(self, request: ExplainRequest) -> ExplainResponse:
        self.first.set()
        self.sent.append(request)
        if self.fail:
            raise ExplainerError("the explainer broke")
        return ExplainResponse(request.index, (f"moves thing {request.index}",) * request.samples)


def test_requests_go_out_while_comparison_rows_still_decode() -> None:
    explainer = Streaming()
    decoder = Gated(explainer.first)
    info = ModelInfo(("pytorch",), {})
    result = engine.explain_decoder(decoder, info, CONFIG, explainer)
    assert decoder.calls == 9
    assert decoder.waited is True  # the first request was out before the last row decoded

    # The same requests as measuring everything first and then asking.
    prepared = engine.prepare(decoder, info, CONFIG)
    measured, _, _ = engine.measure_latents(PyTorchVAEAdapter(BlobDecoder(), device="cpu"),
                                            CONFIG, prepared.indices, bias=prepared.bias,
                                            output_range=None, progress=False,
                                            plan=prepared.plan)
    expected = engine.build_requests(measured, prepared, CONFIG)
    assert sorted(explainer.sent, key=lambda r: r.index) == expected
    assert [r.index for r in expected] == [0, 1, 2, 3]
    # Results stay in the item order, whatever order the answers came in.
    assert [lr.index for lr in result.latents] == list(prepared.indices)
    assert {lr.index: lr.explanation for lr in result.latents if lr.answers} == {
        i: f"moves thing {i}" for i in range(4)}


def test_top_k_requests_are_streamed_for_the_chosen_items_only() -> None:
    explainer = Streaming()
    config = ExplainConfig(rows=2, steps=5, samples=1, batch_size=10, top_k=2,
                           bias="disentanglement")
    result = engine.explain_decoder(PyTorchVAEAdapter(BlobDecoder(), device="cpu"),
                                    ModelInfo(("pytorch",), {}), config, explainer)
    assert len(explainer.sent) == 2
    assert {r.index for r in explainer.sent} == {lr.index for lr in result.latents if lr.answers}
    assert len(result.skipped) == 2


def test_an_explainer_error_is_raised_after_the_decode_ends() -> None:
    explainer = Streaming(fail=True)
    with pytest.raises(ExplainerError, match="the explainer broke"):
        engine.explain_decoder(PyTorchVAEAdapter(BlobDecoder(), device="cpu"),
                               ModelInfo(("pytorch",), {}), CONFIG, explainer)
    assert len(explainer.sent) == 1  # nothing more was sent after the failure


class Scoring:
    """A certainty measure (bag of words) that notes the thread it runs on and lets the decoder
    know once it has scored an answer."""

    def __init__(self, fail: bool = False) -> None:
        self.threads: list[str] = []
        self.first = threading.Event()
        self.fail = fail

    def __call__(self, answers: Sequence[str]) -> np.ndarray:
        self.threads.append(threading.current_thread().name)
        self.first.set()
        if self.fail:
            raise RuntimeError("the certainty model broke")
        return bow_similarity(answers)


def test_each_answer_is_scored_as_it_arrives_while_later_rows_still_decode() -> None:
    """The agreement of an item's answers is scored on the explain thread as the response
    arrives (here before the last comparison row is even decoded), once per item, and the
    results are those of scoring at the end."""
    scoring = Scoring()
    decoder = Gated(scoring.first)  # holds the last comparison row until an answer is scored
    info = ModelInfo(("pytorch",), {})
    prepared = replace(engine.prepare(decoder, info, CONFIG), similarity=scoring)
    result = engine.explain_decoder(decoder, info, CONFIG, Streaming(), prepared=prepared)
    assert decoder.waited is True
    assert scoring.threads == ["lexflow-explain"] * 4  # the four active items, each once
    for lr in result.latents:
        if lr.answers:
            again = consensus(lr.answers, threshold=CONFIG.threshold, similarity=bow_similarity)
            assert (lr.certainty, lr.explanation) == (again.certainty, again.explanation)


def test_a_scoring_error_is_the_runs_after_every_answer_is_in() -> None:
    """A certainty measure that fails while the answers arrive does not cut the explainer
    short: every request is answered (and checkpointed), then the run fails with that error, as
    when the scoring ran at the end."""
    scoring = Scoring(fail=True)
    explainer = Streaming()
    decoder = PyTorchVAEAdapter(BlobDecoder(), device="cpu")
    info = ModelInfo(("pytorch",), {})
    prepared = replace(engine.prepare(decoder, info, CONFIG), similarity=scoring)
    with pytest.raises(RuntimeError, match="the certainty model broke"):
        engine.explain_decoder(decoder, info, CONFIG, explainer, prepared=prepared)
    assert sorted(r.index for r in explainer.sent) == [0, 1, 2, 3]
