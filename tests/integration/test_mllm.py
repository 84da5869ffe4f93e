"""The MLLM explainers against real HTTP on 127.0.0.1, one loopback server per wire format.

No SDK is mocked: each explainer's official client talks to tests/mllm_servers.py, which is
scripted per test with faults (429 with Retry-After, 500, a slow answer, malformed JSON, an empty
answer, a refusal). Unit level: lexflow.engine.measure_latents + run_explainer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from mllm_servers import WIRES, MLLMServer
from models.blob import BlobDecoder

from lexflow.adapters.pytorch_vae import PyTorchVAEAdapter
from lexflow.config import ExplainConfig
from lexflow.engine import build_requests, explain_measured, latent_prepared, latent_result, measure_latents
from lexflow.explainers import get_explainer
from lexflow.explainers.mllm import MLLMExplainer
from lexflow.explainers.prompts import COMBINATION, write_statement

KEYS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY"}
CONFIG = ExplainConfig(rows=2, samples=3)
FAST = {"backoff": 0.01, "timeout": 5.0}  # retries without waiting (Retry-After still honoured)


@pytest.fixture(scope="module")
def measured() -> tuple[dict[int, Any], tuple[float, ...]]:
    decoder = PyTorchVAEAdapter(BlobDecoder(), device="cpu")
    m, _, values = measure_latents(decoder, CONFIG, tuple(range(5)), bias="disentanglement",
                                   output_range=None, progress=False)
    return m, values


@pytest.fixture
def serve(monkeypatch, tmp_path) -> Iterator[Callable[..., MLLMServer]]:
    """Start servers for a test (stopped at teardown); keys are fake, the cache is per test."""
    monkeypatch.setenv("LEXFLOW_CACHE_DIR", str(tmp_path / "cache"))
    for variable in KEYS.values():
        monkeypatch.setenv(variable, "sk-test-key")
    started: list[MLLMServer] = []

    def start(wire: str, model: str = "test-model") -> MLLMServer:
        server = MLLMServer(wire, model).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def explainer(server: MLLMServer, **options: Any) -> MLLMExplainer:
    options = {"base_url": server.url, "cache": "none", **FAST, **options}
    ex = get_explainer(f"{server.wire}:/{server.model}", options)
    assert isinstance(ex, MLLMExplainer)
    return ex


def run(ex: MLLMExplainer, measured, samples: int = 3, **kw: Any) -> dict[int, Any]:
    m, values = measured
    config = ExplainConfig(rows=2, samples=samples)
    return explain_measured(ex, m, latent_prepared(5, config), config, **kw)


@pytest.mark.parametrize("wire", WIRES)
def test_answers_images_and_usage_arrive_per_wire_format(serve, measured, wire: str) -> None:
    server = serve(wire, "gpt-4o" if wire == "openai" else "test-model")
    responses = run(explainer(server), measured)
    assert set(responses) == {0, 1, 2, 3}  # latent 4 is inactive: never asked
    assert responses[0].answers == ("As z_0 increases, the blob moves from left to right.",) * 3
    assert responses[2].details["labels"] == ["blob size"] * 3
    assert all(r.failures == () and r.calls == 3 for r in responses.values())
    assert len(server.calls) == 12
    for seen in server.calls:  # the grids themselves, as PNG, in order
        m = measured[0][seen.latent]
        assert seen.images == [m.grid, m.comparison_grid]
    if wire != "anthropic":  # the Messages API takes no seed
        seeds = [s.seed for s in server.calls]
        assert None not in seeds and len(set(seeds)) == 12
    assert responses[0].input_tokens == 3000 and responses[0].output_tokens == 150
    if wire == "openai":  # gpt-4o is in the price table; the others are unknown models: 0
        assert responses[0].cost_usd == pytest.approx((2.5 * 3000 + 10 * 150) / 1e6)
    else:
        assert responses[0].cost_usd == 0.0


@pytest.mark.parametrize("wire", WIRES)
def test_transient_faults_are_retried_and_succeed(serve, measured, wire: str) -> None:
    server = serve(wire)
    server.script[0] = ["429:0", "500", "503"]
    server.script[1] = ["slow:6"]  # slower than the timeout: abandoned, asked again
    responses = run(explainer(server, timeout=2.0), measured)
    for i in (0, 1):
        assert responses[i].failures == ()
        assert all(a.startswith(f"As z_{i} increases") for a in responses[i].answers)
    assert responses[0].calls == 3 + 3
    assert responses[1].calls >= 3 + 1  # a loaded machine may time out another call too



def test_retry_after_is_honoured(serve, measured) -> None:
    server = serve("openai")
    server.script[0] = ["429:1"]
    responses = run(explainer(server), measured, samples=1)
    assert responses[0].failures == () and responses[0].calls == 2
    first, retry = [s.started for s in server.calls if s.latent == 0]
    assert retry - first >= 0.9  # a lower bound only: waiting longer is never wrong


@pytest.mark.parametrize("wire", WIRES)
def test_permanent_faults_are_recorded_per_answer_not_retried(serve, measured, wire: str) -> None:
    server = serve(wire)
    server.script[2] = ["malformed", "empty", "refusal"]
    server.script[3] = ["400", "401", "blocked"]
    responses = run(explainer(server), measured)
    for i in (2, 3):
        assert responses[i].answers == ("", "", "") and responses[i].calls == 3
        assert len(responses[i].failures) == 3
    text = " ".join(responses[2].failures + responses[3].failures)
    assert "malformed" in text and "empty answer" in text and "refusal" in text
    assert "HTTP 400" in text and "HTTP 401" in text
    assert responses[0].failures == ()  # the other latents are kept
    m = measured[0]
    failed = latent_result(3, latent_prepared(5, CONFIG), m[3], responses[3], 0.5)
    kept = latent_result(0, latent_prepared(5, CONFIG), m[0], responses[0], 0.5)
    assert failed.status == "failed" and failed.explanation is None and len(failed.failures) == 3
    assert kept.status == "explained"


def test_persistent_server_errors_stop_at_max_attempts(serve, measured) -> None:
    server = serve("openai")
    server.script[1] = ["500"] * 10
    responses = run(explainer(server, max_attempts=3), measured, samples=1)
    assert responses[1].answers == ("",) and responses[1].calls == 3
    assert responses[1].failures == (
        "sample 1: HTTP 500: Error code: 500 - scripted 500 (gave up after 3 attempts)",)


def test_some_failed_samples_lower_certainty_but_keep_the_latent(serve, measured) -> None:
    server = serve("anthropic")
    server.script[0] = ["400"]
    responses = run(explainer(server, concurrency=1), measured)
    assert responses[0].answers.count("") == 1 and len(responses[0].failures) == 1
    result = latent_result(0, latent_prepared(5, CONFIG), measured[0][0], responses[0], 0.3)
    assert result.status == "explained" and 0 < result.certainty < 1


def test_concurrency_bounds_calls_in_flight(serve, measured) -> None:
    server = serve("openai")
    server.delay = 0.5
    run(explainer(server, concurrency=3), measured)
    assert 1 < server.max_in_flight <= 3


def test_rerun_makes_zero_calls_and_gives_the_same_answers(serve, measured, tmp_path) -> None:
    server = serve("openai")
    ex = explainer(server, cache=str(tmp_path / "answers"))
    first = run(ex, measured)
    assert len(server.calls) == 12
    again = run(explainer(server, cache=str(tmp_path / "answers")), measured)
    assert len(server.calls) == 12
    assert {i: r.answers for i, r in again.items()} == {i: r.answers for i, r in first.items()}
    assert all(r.calls == 0 and r.cost_usd == 0 and r.details["cached"] == 3 for r in again.values())
    # anything that changes the answer asks again
    run(explainer(server, cache=str(tmp_path / "answers"), temperature=0.5), measured)
    assert len(server.calls) == 24


def test_failures_are_not_cached(serve, measured, tmp_path) -> None:
    server = serve("ollama")
    server.script[2] = ["refusal"]
    run(explainer(server, cache=str(tmp_path / "c")), measured)
    calls = len(server.calls)
    again = run(explainer(server, cache=str(tmp_path / "c")), measured)
    assert len(server.calls) == calls + 1 and again[2].failures == ()


def test_interrupted_run_resumes_with_only_the_remaining_calls(serve, measured, tmp_path) -> None:
    server = serve("gemini")
    server.delay = 0.05
    ex = explainer(server, cache=str(tmp_path / "c"), concurrency=1)
    m, values = measured
    requests = build_requests(m, latent_prepared(5, CONFIG), CONFIG)
    stream = ex.explain_many(requests)
    finished = [next(stream), next(stream)]  # "killed" after two latents
    stream.close()  # cancels the calls in flight and waits for the worker
    time.sleep(0.3)  # let the server finish recording a request cancelled mid-send
    stored = {(e["latent"], e["seed"]) for e in
              (json.loads(p.read_text()) for p in (tmp_path / "c").rglob("*.json"))}
    assert len(stored) == ex.cache.writes >= 6 and len(finished) == 2
    n_before = len(server.calls)
    resumed = run(explainer(server, cache=str(tmp_path / "c")), measured)
    asked_after = {(s.latent, s.seed) for s in server.calls[n_before:]}
    assert len(server.calls) - n_before == 12 - len(stored)
    assert not asked_after & stored  # nothing finished is asked again
    assert len(asked_after | stored) == 12
    assert all(r.failures == () for r in resumed.values())


def test_grounding_flags_answers_that_contradict_the_evidence(serve, measured) -> None:
    server = serve("openai")
    server.answers[0] = '{"label": "c", "sentence": "The blob turns from red to blue.", "increases": "hue"}'
    responses = run(explainer(server, grounding=True), measured)
    assert responses[0].details["flags"][0].startswith("answer 1 names colour (hue) ('red', 'blue')")
    assert responses[2].details["flags"] == []
    prompt = [s for s in server.calls if s.latent == 0][0].body["messages"][0]["content"][0]["text"]
    assert "Measurements of the images, for reference: horizontal position goes from" in prompt
    result = latent_result(0, latent_prepared(5, CONFIG), measured[0][0], responses[0], 0.5)
    assert result.flags == tuple(responses[0].details["flags"])


def test_a_text_llm_writes_a_bias_statement(serve) -> None:
    server = serve("openai")
    server.script["*"] = ["text:In these images a group of latent variables jointly controls one property."]
    ex = explainer(server)
    bias = write_statement(COMBINATION, ex)
    assert bias.statement == "In these images a group of latent variables jointly controls one property."
    sent = server.calls[0].body["messages"][0]["content"]
    assert sent[0]["text"].endswith("Sentence:") and len(sent) == 1  # text only, no images


def test_dry_run_preview_counts_cached_calls_and_sends_nothing(serve, measured, tmp_path) -> None:
    server = serve("openai", "gpt-4o")
    m, values = measured
    requests = build_requests(m, latent_prepared(5, CONFIG), CONFIG)
    ex = explainer(server, cache=str(tmp_path / "c"))
    before = ex.preview(requests[0])
    assert before.calls == 3 and before.cached == 0 and before.cost_usd > 0
    assert before.prompt.startswith("Image 1 is a grid") and len(before.images) == 2
    assert not server.calls
    list(ex.explain_many(requests[:1]))
    after = ex.preview(requests[0])
    assert (after.calls, after.cached, after.cost_usd) == (0, 3, 0.0)

