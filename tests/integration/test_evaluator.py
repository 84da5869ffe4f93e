"""The `lexflow` MLflow model evaluator (plugins/lexflow-mlflow), through mlflow.models.evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import register_blob_model
from helpers import experiment_id, lexflow_tags, unique

from lexflow import names
from lexflow.errors import ConfigError


def test_evaluator_is_registered_and_claims_only_its_model_type() -> None:
    from lexflow_mlflow.evaluator import LexflowEvaluator
    from mlflow.models.evaluation.evaluator_registry import _model_evaluation_registry as registry

    assert registry.get_evaluator("lexflow").__class__ is LexflowEvaluator  # via the entry point
    assert LexflowEvaluator.can_evaluate(model_type="lexflow-latents", evaluator_config={})
    for other in ("regressor", "classifier", "text", None):
        assert not LexflowEvaluator.can_evaluate(model_type=other, evaluator_config={})


def test_unknown_evaluator_config_key_suggests_the_field() -> None:
    from lexflow_mlflow.evaluator import explain_config

    with pytest.raises(ConfigError, match=r"'row'\. Did you mean 'rows'\?"):
        explain_config({"row": 3})
    assert explain_config({"rows": 2, "latents": "0-2", "model_uri": "models:/x/1"}).latents == (0, 1, 2)


def test_evaluate_explains_logs_and_validates(tracking: str, no_progress: None, tmp_path: Path) -> None:
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models import MetricThreshold
    from mlflow.models.evaluation.validation import ModelValidationFailedException

    name = unique("eval-blob")
    version = register_blob_model(name)
    with mlflow.start_run(experiment_id=experiment_id(unique("eval"))) as run:
        result = mlflow.models.evaluate(
            f"models:/{name}/{version}", data=pd.DataFrame({"unused": [0]}),
            model_type="lexflow-latents", evaluators="lexflow", evaluator_config={"rows": 3},
        )
    assert result.metrics[names.METRIC_EXPLAINABLE_FRACTION] == pytest.approx(0.8)
    assert result.metrics[names.METRIC_ACTIVE_LATENTS] == 4
    assert result.metrics[names.certainty_metric(0, 5)] == pytest.approx(1.0)

    c = MlflowClient()
    eval_run = c.get_run(run.info.run_id)
    assert eval_run.data.metrics[names.METRIC_EXPLAINABLE_FRACTION] == pytest.approx(0.8)
    files = {f.path for f in c.list_artifacts(run.info.run_id, names.ARTIFACT_DIR)}
    assert {names.EXPLANATIONS_FILE, names.REPORT_FILE} <= files
    # The explanation is written into the evaluation run itself: no second run, no copy.
    explain_run_id = eval_run.data.tags[names.TAG_RUN_ID]
    assert explain_run_id == run.info.run_id
    assert eval_run.data.params["rows"] == "3"
    doc = json.loads(Path(c.download_artifacts(run.info.run_id, names.EXPLANATIONS_FILE,
                                               str(tmp_path))).read_text())
    assert doc["schema"] == names.EXPLANATIONS_SCHEMA and doc["run_id"] == explain_run_id

    tags = lexflow_tags(name, version)
    assert tags[names.TAG_STATUS] == "complete" and tags[names.TAG_RUN_ID] == explain_run_id
    assert tags["lexflow.latent.00"] == "moves the object from left to right"

    mlflow.validate_evaluation_results(
        {names.METRIC_EXPLAINABLE_FRACTION: MetricThreshold(threshold=0.5, greater_is_better=True)},
        result)
    with pytest.raises(ModelValidationFailedException) as err:
        mlflow.validate_evaluation_results({
            names.METRIC_EXPLAINABLE_FRACTION: MetricThreshold(threshold=0.9, greater_is_better=True),
            names.METRIC_MEAN_CERTAINTY: MetricThreshold(threshold=0.5, greater_is_better=True),
            names.METRIC_ACTIVE_LATENTS: MetricThreshold(threshold=5, greater_is_better=True),
        }, result)
    msg = str(err.value)
    assert "Metric explainable_fraction value threshold check failed" in msg
    assert "Metric active_latents value threshold check failed" in msg
    assert "mean_certainty" not in msg

