"""Full ``lexflow.explain`` runs with an MLLM explainer: a registered BlobDecoder in a throwaway
SQLite store, the official OpenAI SDK talking to a loopback server. What the run records, that
failures make the version ``partial`` (never ``complete`` with gaps), that the API key is written
nowhere, that a rerun is served from the cache, and that ``--dry-run`` sends and writes nothing."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import experiment_runs
from helpers import lexflow_tags
from mllm_servers import MLLMServer

from lexflow import names
from lexflow.cli import cli
from lexflow.config import ExplainConfig
from lexflow.tracking.job import explain

SECRET = "sk-test-SECRET-1234"
EVIL = '{"label": "x", "sentence": "<script>alert(1)</script> moves the blob right.", "increases": "x"}'


@pytest.fixture
def server(monkeypatch, tmp_path, no_progress) -> Iterator[MLLMServer]:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("LEXFLOW_CACHE_DIR", str(tmp_path / "cache"))
    with MLLMServer("openai", "gpt-4o") as s:
        monkeypatch.setenv("OPENAI_BASE_URL", s.url)
        yield s


def config(**kw: object) -> ExplainConfig:
    base: dict = dict(explainer="openai:/gpt-4o", rows=2, samples=3, grounding=True,
                      extra={"backoff": 0.01})
    base.update(kw)
    return ExplainConfig(**base)  # type: ignore[arg-type]


def everything_written(name: str, version: str, run_id: str, root: Path) -> str:
    """Params, metrics keys, run tags, version tags and description, and every file under root."""
    from mlflow import MlflowClient

    c = MlflowClient()
    run = c.get_run(run_id)
    mv = c.get_model_version(name, version)
    parts = [json.dumps(run.data.params), json.dumps(run.data.tags), json.dumps(list(run.data.metrics)),
             json.dumps(mv.tags), mv.description or ""]
    for path in root.rglob("*"):
        if path.is_file():
            parts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(parts)


def test_full_run_records_answers_failures_flags_and_never_the_key(
        server, sqlite_tracking, register_blob, tmp_path, capfd, caplog) -> None:
    for logger in ("lexflow", "openai", "httpx", "httpx2", "mlflow"):  # where a key could be logged
        caplog.set_level(logging.DEBUG, logger=logger)
    version = register_blob("blob-mllm")
    server.script[0] = ["429:0", "500"]  # transient: retried, then fine
    server.script[1] = ["401", "400", "refusal"]  # every answer fails: the latent fails
    server.answers[0] = '{"label": "c", "sentence": "The blob turns from red to blue.", "increases": "hue"}'
    server.answers[3] = EVIL
    result = explain(f"models:/blob-mllm/{version}", config())

    by_index = {r.index: r for r in result.latents}
    assert by_index[0].status == "explained" and by_index[0].failures == ()
    assert by_index[0].explanation == "The blob turns from red to blue."  # flagged below
    assert by_index[2].explanation == "As z_2 increases, the blob becomes larger."
    assert by_index[1].status == "failed" and by_index[1].explanation is None
    assert len(by_index[1].failures) == 3 and "HTTP 401" in " ".join(by_index[1].failures)
    assert by_index[4].status == "inactive"
    assert result.status == names.STATUS_PARTIAL

    tags = lexflow_tags("blob-mllm", version)
    assert tags[names.TAG_STATUS] == names.STATUS_PARTIAL
    assert tags["lexflow.latent.01"] == names.NO_CLEAR_EXPLANATION
    assert tags["lexflow.latent.02"].startswith("As z_2 increases")

    artifacts = Path(tmp_path / "artifacts")
    from mlflow import MlflowClient

    MlflowClient().download_artifacts(result.run_id, "lexflow", str(artifacts))
    doc = json.loads((artifacts / "lexflow" / "explanations.json").read_text())
    assert doc["status"] == "partial"
    records = {r["index"]: r for r in doc["latents"]}
    assert records[1]["status"] == "failed" and len(records[1]["failures"]) == 3
    assert records[0]["flags"] and records[0]["flags"][0].startswith("answer 1 names colour (hue)")
    assert records[2]["flags"] == [] and records[2]["details"]["labels"] == ["blob size"] * 3
    report = (artifacts / "lexflow" / "report.html").read_text()
    assert "<script>" not in report and "&lt;script&gt;alert(1)&lt;/script&gt;" in report
    metrics = MlflowClient().get_run(result.run_id).data.metrics
    assert metrics[names.METRIC_CALLS] == 12 + 2  # 4 latents x 3 samples, 2 retries
    assert metrics[names.METRIC_COST] > 0

    # the key went to the server, and nowhere else
    assert all({k.lower(): v for k, v in s.headers.items()}["authorization"] == f"Bearer {SECRET}"
               for s in server.calls)
    written = everything_written("blob-mllm", version, result.run_id, tmp_path)
    out, err = capfd.readouterr()
    logs = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    for where, text in (("store and files", written), ("stdout", out), ("stderr", err), ("logs", logs)):
        assert SECRET not in text, f"the API key leaked into {where}"
    assert list((tmp_path / "cache").rglob("*.json")), "the cache was used (and searched above)"


def test_rerun_is_served_from_the_cache(server, sqlite_tracking, register_blob) -> None:
    version = register_blob("blob-cache")
    first = explain(f"models:/blob-cache/{version}", config(grounding=False))
    assert len(server.calls) == 12 and first.usage["calls"] == 12
    again = explain(f"models:/blob-cache/{version}", config(grounding=False))
    assert len(server.calls) == 12 and again.usage["calls"] == 0 and again.usage["cost_usd"] == 0
    assert [r.explanation for r in again.latents] == [r.explanation for r in first.latents]
    assert lexflow_tags("blob-cache", version)[names.TAG_STATUS] == names.STATUS_COMPLETE


def test_dry_run_prints_the_plan_and_sends_and_writes_nothing(server, sqlite_tracking,
                                                              register_blob, monkeypatch) -> None:
    version = register_blob("blob-dry")
    monkeypatch.delenv("OPENAI_API_KEY")  # a dry run needs no key
    runs_before = len(experiment_runs("Default"))
    res = CliRunner().invoke(cli, ["explain", f"models:/blob-dry/{version}", "--explainer", "openai:/gpt-4o",
                                   "--rows", "2", "--samples", "3", "--dry-run", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "Dry run: models:/blob-dry/" in res.output
    assert "--- latent 00: 3 call(s), 0 cached; images: " in res.output
    assert "These two rows of images show the same pattern of change despite other variations." in res.output
    assert "total: 12 call(s) (0 cached)" in res.output and "inactive (not asked): 4" in res.output
    assert server.seen == []
    assert len(experiment_runs("Default")) == runs_before
    assert lexflow_tags("blob-dry", version) == {}
    as_json = CliRunner().invoke(cli, ["explain", f"models:/blob-dry/{version}", "--explainer",
                                       "openai:/gpt-4o", "--rows", "2", "--dry-run", "--json",
                                       "--no-progress"])
    plan = json.loads(as_json.stdout)
    assert plan["calls"] == 20 and plan["cost_usd"] > 0 and server.seen == []


def test_missing_key_fails_before_any_work(sqlite_tracking, register_blob, monkeypatch) -> None:
    version = register_blob("blob-nokey")
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    res = CliRunner().invoke(cli, ["explain", f"models:/blob-nokey/{version}", "--explainer",
                                   "openai:/gpt-4o", "--no-progress"])
    assert res.exit_code == 2 and "OPENAI_API_KEY" in res.output
    assert lexflow_tags("blob-nokey", version) == {}
    assert os.environ.get("OPENAI_API_KEY") is None
