"""lexflow.explain called inside the user's own active run logs into a run nested under it, leaves
the user's run active and untouched, and writes no process-wide state (environment, active
experiment)."""

from __future__ import annotations

import os

import mlflow
from conftest import register_blob_model
from helpers import experiment_id, unique
from mlflow import MlflowClient

import lexflow
from lexflow import names


def _own_env() -> dict[str, str]:
    """The environment variables lexflow (or MLflow on its behalf) could set."""
    return {k: v for k, v in os.environ.items() if k.startswith(("MLFLOW_", "LEXFLOW_"))}


def test_explain_inside_an_active_run_logs_into_a_nested_run(sqlite_tracking: str,
                                                              no_progress: None) -> None:
    name = unique("nested-blob")
    version = register_blob_model(name)
    experiment = experiment_id(unique("user-experiment"))
    env_before = _own_env()
    with mlflow.start_run(experiment_id=experiment) as parent:
        result = lexflow.explain(f"models:/{name}/{version}", lexflow.ExplainConfig(rows=2),
                                 progress=False)
        active = mlflow.active_run()
        assert active is not None and active.info.run_id == parent.info.run_id  # still the user's
    assert _own_env() == env_before  # lexflow set no MLflow/lexflow variable (e.g. HTTP retries)

    c = MlflowClient()
    child = c.get_run(result.run_id)
    assert result.run_id != parent.info.run_id
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.info.experiment_id == experiment and child.info.status == "FINISHED"
    assert {f.path for f in c.list_artifacts(result.run_id, names.ARTIFACT_DIR)} >= {
        names.EXPLANATIONS_FILE, names.REPORT_FILE}
    assert c.list_artifacts(parent.info.run_id) == []  # the user's run is not written to
    assert c.get_run(parent.info.run_id).info.status == "FINISHED"


def test_explain_outside_a_run_starts_a_top_level_run(sqlite_tracking: str,
                                                      no_progress: None) -> None:
    name = unique("top-blob")
    version = register_blob_model(name)
    result = lexflow.explain(f"models:/{name}/{version}", lexflow.ExplainConfig(rows=2),
                             progress=False, experiment=unique("lexflow-top"))
    assert mlflow.active_run() is None  # no fluent run left behind
    run = MlflowClient().get_run(result.run_id)
    assert "mlflow.parentRunId" not in run.data.tags and run.info.status == "FINISHED"
