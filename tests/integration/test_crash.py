"""Crash safety with real processes against the postgres + S3 server (tests/backends.py):

* a ``lexflow explain`` killed with SIGKILL midway and started again finishes the same run,
  without decoding again what the first attempt had saved, and with the same results;
* two explanations of one version at once leave the version's tags from one run only (two real
  processes, and two tag writers racing through the protocol many times);
* the tracking server going away mid-run (a TCP proxy that refuses connections): bounded retries,
  then status failed once it is back (and a rerun resumes), or a clear error if it never is.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from backends import (
    Backend,
    CountingBlob,
    FlakyProxy,
    register_module,
    run_lexflow,
    start_lexflow,
    traversals_in,
)
from helpers import finish, lexflow_tags, unique

pytestmark = pytest.mark.integration

ROWS, STEPS, DIM = 4, 5, 8
# One decode call per latent traversal, so a CountingBlob log tells which latents were decoded.
ARGS = ["--json", "--no-progress", "--rows", str(ROWS), "--steps", str(STEPS),
        "--batch-size", str(ROWS * STEPS), "--experiment", "lexflow-crash"]


def _artifact_prefix(backend: Backend, run_id: str) -> str:
    from mlflow import MlflowClient

    uri = MlflowClient().get_run(run_id).info.artifact_uri
    return uri.removeprefix(f"s3://{backend.s3.bucket}/")


def _checkpointed(backend: Backend, run_id: str) -> set[int]:
    """Latents whose measurement the run has saved, read from S3 directly (not through lexflow)."""
    s3 = backend.s3.client()
    out: set[int] = set()
    for key in backend.s3.keys(f"{_artifact_prefix(backend, run_id)}/lexflow/partial/"):
        doc = json.loads(s3.get_object(Bucket=backend.s3.bucket, Key=key)["Body"].read())
        out |= {int(i) for i in doc.get("measured", {})}
    return out


def _wait_for(condition: Any, timeout: float, what: str, proc: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"lexflow exited ({proc.returncode}) before {what}:\n{err[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def _register(prefix: str, dim: int = DIM) -> tuple[str, str]:
    name = unique(prefix)
    return name, register_module(name, CountingBlob(latent_dim=dim, steps=STEPS))


def test_sigkill_midway_then_rerun_finishes_the_same_run_without_repeating_work(
        backend: Backend, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    name, version = _register("crash")
    args = ["explain", f"models:/{name}/{version}", *ARGS]
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    proc = start_lexflow(args, backend.env(LEXFLOW_TEST_DECODE_LOG=str(first_log),
                                           LEXFLOW_TEST_DECODE_DELAY="0.5",
                                           LEXFLOW_CHECKPOINT_INTERVAL="0"))

    def saved_three() -> tuple[str, set[int]] | None:
        run_id = lexflow_tags(name, version).get("lexflow.run_id")
        saved = _checkpointed(backend, run_id) if run_id else set()
        return (run_id, saved) if len(saved) >= 3 else None

    _wait_for(saved_three, 120, "three checkpointed latents", proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    run_id = lexflow_tags(name, version)["lexflow.run_id"]
    saved = _checkpointed(backend, run_id)
    assert 3 <= len(saved) < DIM, f"not killed midway: saved {sorted(saved)}"
    assert lexflow_tags(name, version)["lexflow.status"] == "running"
    assert MlflowClient().get_run(run_id).info.status == "RUNNING"

    done = run_lexflow(args, backend.env(LEXFLOW_TEST_DECODE_LOG=str(second_log),
                                         LEXFLOW_CHECKPOINT_INTERVAL="0"))
    assert done.returncode == 0, done.describe()
    result = json.loads(done.stdout.splitlines()[-1])

    # The same run was finished, not a new one.
    assert result["run_id"] == run_id
    assert MlflowClient().get_run(run_id).info.status == "FINISHED"
    tags = lexflow_tags(name, version)
    assert tags["lexflow.status"] == "complete" and tags["lexflow.run_id"] == run_id
    # Nothing saved before the kill was decoded again; everything else exactly once.
    first, second = traversals_in(first_log, ROWS, STEPS), traversals_in(second_log, ROWS, STEPS)
    assert not set(second) & saved, f"re-decoded saved latents {sorted(set(second) & saved)}"
    assert sorted(second) == sorted(set(range(DIM)) - saved)
    assert set(first) | set(second) == set(range(DIM))
    # Nothing lost: every latent has the results an uninterrupted computation gives.
    reference = _uninterrupted_reference()
    assert [r["index"] for r in result["latents"]] == list(range(DIM))
    for r in result["latents"]:
        ref = reference[r["index"]]
        assert r["evidence"]["total_change"] == ref["total_change"]
        assert r["explanation"] == ref["explanation"] and r["status"] == ref["status"]
    assert "left to right" in result["latents"][0]["explanation"]
    assert int(MlflowClient().get_run(run_id).data.tags["lexflow.resumed"]) >= len(saved)


def _uninterrupted_reference() -> dict[int, dict[str, Any]]:
    """The same explanation computed in this process without MLflow (same options and seed)."""
    from lexflow import engine
    from lexflow.adapters.pytorch_vae import PyTorchVAEAdapter
    from lexflow.config import ExplainConfig
    from lexflow.engine import explain_measured, latent_prepared, latent_result
    from lexflow.explainers import get_explainer
    from lexflow.tracking.job import explainer_options

    config = ExplainConfig(rows=ROWS, steps=STEPS, batch_size=ROWS * STEPS, cache="none")
    decoder = PyTorchVAEAdapter(CountingBlob(latent_dim=DIM, steps=STEPS), device="cpu")
    indices = tuple(range(DIM))
    measured, _, _ = engine.measure_latents(decoder, config, indices,
                                                   bias="disentanglement", output_range=None,
                                                   progress=False)
    explainer = get_explainer("measure", explainer_options(config))
    responses = explain_measured(explainer, measured, latent_prepared(DIM, config), config)
    out = {}
    for i in indices:
        r = latent_result(i, latent_prepared(DIM, config), measured[i], responses.get(i), config.threshold)
        out[i] = {"total_change": measured[i].evidence.total_change,
                  "explanation": r.explanation, "status": r.status}
    return out


def test_two_processes_on_one_version_leave_the_tags_of_one_run(backend: Backend) -> None:
    from mlflow import MlflowClient

    name, version = _register("race", dim=5)
    args = ["explain", f"models:/{name}/{version}", *ARGS]
    env = backend.env(LEXFLOW_TEST_DECODE_DELAY="0.3")
    procs = [start_lexflow(args, env), start_lexflow(args, env)]
    results = [finish(p) for p in procs]
    ok = [r for r in results if r.returncode == 0]
    assert ok, "\n".join(r.describe() for r in results)
    for r in results:
        if r.returncode != 0:  # the run that was taken over says so, and wrote no tags
            assert r.returncode == 1 and "took over" in r.stderr, r.describe()

    tags = lexflow_tags(name, version)
    assert tags["lexflow.status"] == "complete"
    owner = tags["lexflow.run_id"]
    assert owner in {json.loads(r.stdout.splitlines()[-1])["run_id"] for r in ok}
    c = MlflowClient()
    assert c.get_run(owner).info.status == "FINISHED"
    doc = json.loads(Path(c.download_artifacts(owner, "lexflow/explanations.json")).read_text())
    expected = {f"lexflow.latent.{r['label']}": r["explanation"] or "No clear explanation"
                for r in doc["latents"]}
    latent_tags = {k: v for k, v in tags.items()
                   if k.startswith("lexflow.latent.") and not k.endswith(".certainty")}
    assert latent_tags == expected
    assert tags["lexflow.explainable_fraction"] == f"{doc['summary']['explainable_fraction']:.3f}"


def test_racing_tag_writers_never_leave_a_complete_version_with_mixed_tags(
        backend: Backend) -> None:
    """Writer A goes through begin -> complete; writer B begins a little later each round, so its
    begin lands at every point of A's protocol in turn (a real server, real threads). Whenever
    the version ends "complete", every lexflow tag must be the owner's. (The protocol before
    hardening fails this: B's begin inside A's tag writes left A "complete" with tags missing.)"""
    from lexflow.errors import TrackingError
    from lexflow.tracking.tags import VersionTags

    name, version = _register("tagrace", dim=2)
    latents = {"A": 4, "B": 1}  # different latent sets: leftovers show

    def tags_of(writer: str) -> dict[str, str]:
        out = {"lexflow.run_id": writer, "lexflow.explainer": f"{writer}-explainer",
               "lexflow.explainable_fraction": writer, "lexflow.version": writer}
        for k in range(latents[writer[0]]):
            out[f"lexflow.latent.{k:02d}"] = f"{writer} latent {k}"
        return out

    errors: list[BaseException] = []

    def write(writer: str, delay: float) -> None:
        time.sleep(delay)
        vt = VersionTags(name, version, writer)
        try:
            vt.begin(f"{writer}-explainer")
            with contextlib.suppress(TrackingError):  # taken over: it says so and stops
                vt.complete(tags_of(writer), f"by {writer}")
        except BaseException as exc:  # e.g. the store's own upsert race, surfaced as an error
            errors.append(exc)

    start = time.monotonic()
    write("A-calibration", 0.0)
    one_protocol = time.monotonic() - start
    rounds, outcomes = 8, []
    for r in range(rounds):
        threads = [threading.Thread(target=write, args=(f"A{r}", 0.0)),
                   threading.Thread(target=write, args=(f"B{r}", one_protocol * (r + 0.5) / rounds))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, f"round {r}: a writer failed: {errors[0]!r}"
        tags = lexflow_tags(name, version)
        outcomes.append(tags["lexflow.status"])
        if tags["lexflow.status"] == "complete":
            owner = tags["lexflow.run_id"]
            assert tags == {**tags_of(owner), "lexflow.status": "complete"}, (
                f"round {r}: complete with tags not all from {owner}: {tags}")
    assert outcomes.count("complete") >= rounds // 2, outcomes


@pytest.fixture
def proxy(pg_s3_server: Backend) -> Any:
    port = int(pg_s3_server.url.rsplit(":", 1)[1])
    p = FlakyProxy(port)
    yield p
    p.down()


def _lost_server_env(backend: Backend, proxy: FlakyProxy, log: Path, wait_s: int) -> dict[str, str]:
    return backend.env(proxy.url, LEXFLOW_TEST_DECODE_LOG=str(log), LEXFLOW_TEST_DECODE_DELAY="0.5",
                       LEXFLOW_CHECKPOINT_INTERVAL="0", MLFLOW_HTTP_REQUEST_MAX_RETRIES="2",
                       MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1", MLFLOW_HTTP_REQUEST_TIMEOUT="5",
                       LEXFLOW_TRACKING_WAIT_S=str(wait_s))


def test_tracking_server_lost_then_back_tags_failed_and_a_rerun_resumes(
        backend: Backend, proxy: FlakyProxy, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    name, version = _register("lost")
    args = ["explain", f"models:/{name}/{version}", *ARGS]
    log = tmp_path / "first.log"
    proc = start_lexflow(args, _lost_server_env(backend, proxy, log, wait_s=60))
    _wait_for(lambda: len(traversals_in(log, ROWS, STEPS)) >= 2, 120, "two decoded latents", proc)
    # Beside this decoder, which waits, the next latent decodes while one is measured and saved:
    # a decoded latent is not yet a saved one, so wait for one to be saved.
    first = _wait_for(lambda: lexflow_tags(name, version).get("lexflow.run_id"), 60, "the run", proc)
    _wait_for(lambda: _checkpointed(backend, first), 60, "a saved latent", proc)
    proxy.down()
    time.sleep(8)  # longer than the retries: lexflow gives up and waits for the server
    proxy.up()
    done = finish(proc, timeout=120)
    assert done.returncode == 1, done.describe()
    assert "stopped answering" in done.stderr and "It answers again" in done.stderr, done.describe()
    tags = lexflow_tags(name, version)
    assert tags["lexflow.status"] == "failed"
    assert "Max retries exceeded" in tags["lexflow.error"] or "Connection" in tags["lexflow.error"]
    run_id = tags["lexflow.run_id"]
    assert MlflowClient().get_run(run_id).info.status == "FAILED"
    saved = _checkpointed(backend, run_id)
    assert saved, "nothing was checkpointed before the server went away"

    second_log = tmp_path / "second.log"
    again = run_lexflow(args, backend.env(LEXFLOW_TEST_DECODE_LOG=str(second_log)))
    assert again.returncode == 0, again.describe()
    assert json.loads(again.stdout.splitlines()[-1])["run_id"] == run_id
    assert not set(traversals_in(second_log, ROWS, STEPS)) & saved
    assert lexflow_tags(name, version)["lexflow.status"] == "complete"


def test_tracking_server_that_never_comes_back_gives_a_clear_error(
        backend: Backend, proxy: FlakyProxy, tmp_path: Path) -> None:
    name, version = _register("gone")
    log = tmp_path / "decode.log"
    proc = start_lexflow(["explain", f"models:/{name}/{version}", *ARGS],
                         _lost_server_env(backend, proxy, log, wait_s=2))
    _wait_for(lambda: len(traversals_in(log, ROWS, STEPS)) >= 2, 120, "two decoded latents", proc)
    proxy.down()
    lost_at = time.monotonic()
    done = finish(proc, timeout=120)
    assert done.returncode == 1, done.describe()
    assert "did not come back within 2 s" in done.stderr, done.describe()
    assert "run the same command again" in done.stderr
    assert time.monotonic() - lost_at < 60, "retries were not bounded"
    assert lexflow_tags(name, version)["lexflow.status"] == "running"  # nobody could say otherwise
