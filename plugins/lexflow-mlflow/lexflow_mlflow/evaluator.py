"""The ``lexflow`` model evaluator: lexflow's explanation as an ``mlflow.models.evaluate`` step.

::

    result = mlflow.models.evaluate(
        "models:/vae/3", data=pd.DataFrame({"unused": [0]}),
        model_type="lexflow-latents", evaluators="lexflow",
        evaluator_config={"explainer": "measure", "rows": 4},
    )
    mlflow.validate_evaluation_results(
        {"explainable_fraction": MetricThreshold(threshold=0.5, greater_is_better=True)}, result)

MLflow accepts any ``model_type`` string that a registered evaluator claims (only ``regressor``
and ``classifier`` need targets; ``None`` needs extra_metrics), so the supported call is
``model_type="lexflow-latents"``. ``data`` is required by MLflow but not used: the latent codes
are sampled from the prior, seeded by ``seed``. ``evaluator_config`` takes the fields of
:class:`lexflow.config.ExplainConfig` plus ``model_uri`` (default: the URI given to evaluate,
known through its logged-model id).

The explanation is written straight into the evaluation run MLflow hands the evaluator
(:func:`lexflow.tracking.job.explain` with ``run_id=``): the run gets the artifacts
(``lexflow/explanations.json``, the grids, ``lexflow/report.html``), the metrics and a
``lexflow.run_id`` tag naming itself, and the model-version tags name it, exactly as
``lexflow explain`` writes them. No thread, no second run, no copy.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mlflow.models.evaluation import EvaluationResult, ModelEvaluator

from lexflow import names
from lexflow.config import ExplainConfig, parse_latents
from lexflow.errors import ConfigError, did_you_mean
from lexflow.tracking.job import explain
from lexflow.tracking.registry import client
from lexflow.tracking.runs import set_run_tags
from lexflow_mlflow import MODEL_TYPE

_OWN_KEYS = ("model_uri",)


def explain_config(evaluator_config: dict[str, Any] | None) -> ExplainConfig:
    """An ExplainConfig from the evaluator config; unknown keys fail with a "did you mean"."""
    cfg = dict(evaluator_config or {})
    fields = [f.name for f in dataclasses.fields(ExplainConfig) if f.name != "extra"]
    unknown = [k for k in cfg if k not in fields and k not in _OWN_KEYS]
    if unknown:
        known = [*fields, *_OWN_KEYS]
        raise ConfigError(
            "Unknown lexflow evaluator_config key(s): "
            + "; ".join(f"{k!r}.{did_you_mean(k, known)}" for k in unknown)
            + f" Known: {', '.join(known)}."
        )
    options = {k: v for k, v in cfg.items() if k in fields}
    if "latents" in options:
        options["latents"] = parse_latents(options["latents"])
    return ExplainConfig(**options)


def _model_uri(evaluator_config: dict[str, Any] | None, model: Any, model_id: str | None) -> str:
    """The URI to explain: ``model_uri`` from the config, else the registered version of the
    evaluated logged model (MLflow passes the evaluator only its logged-model id)."""
    uri = (evaluator_config or {}).get("model_uri")
    if uri:
        return str(uri)
    model_id = model_id or getattr(model, "model_id", None)
    if not model_id:
        raise ConfigError(
            "The lexflow evaluator needs the model's URI: call mlflow.models.evaluate with a "
            "models:/ URI, or pass evaluator_config={'model_uri': 'models:/<name>/<version>'}."
        )
    versions = registered_versions(model_id)
    if len(versions) > 1:
        listed = ", ".join(f"models:/{n}/{v}" for n, v in versions)
        raise ConfigError(
            f"Logged model {model_id} is registered as several versions ({listed}); say which one "
            "to tag with evaluator_config={'model_uri': 'models:/<name>/<version>'}."
        )
    return f"models:/{versions[0][0]}/{versions[0][1]}" if versions else f"models:/{model_id}"


def registered_versions(model_id: str) -> list[tuple[str, str]]:
    """(name, version) of each registration of a logged model, from its ``mlflow.modelVersions``
    tag (MLflow writes it on registration; the REST API leaves ModelVersion.model_id empty)."""
    import json

    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    raw = client().get_logged_model(model_id).tags.get(MLFLOW_MODEL_VERSIONS)
    try:
        entries = json.loads(raw) if raw else []
    except json.JSONDecodeError:
        entries = []
    found = [(str(e["name"]), str(e["version"])) for e in entries
             if isinstance(e, dict) and "name" in e and "version" in e]
    return list(dict.fromkeys(found))  # MLflow may record one registration twice


class LexflowEvaluator(ModelEvaluator):
    """Explains every latent of the evaluated model; metrics as ``lexflow explain`` logs them."""

    name = "lexflow"

    @classmethod
    def can_evaluate(cls, *, model_type: str | None, evaluator_config: dict[str, Any] | None,
                     **kwargs: Any) -> bool:
        return model_type == MODEL_TYPE

    def evaluate(self, *, model_type: str | None, dataset: Any, run_id: str,
                 evaluator_config: dict[str, Any] | None, model: Any = None,
                 extra_metrics: Any = None, custom_artifacts: Any = None, predictions: Any = None,
                 **kwargs: Any) -> EvaluationResult:
        config = explain_config(evaluator_config)
        uri = _model_uri(evaluator_config, model, kwargs.get("model_id"))
        result = explain(uri, config, progress=False, run_id=run_id)
        set_run_tags(run_id, {names.TAG_RUN_ID: result.run_id})
        return EvaluationResult(metrics=result.metrics(), artifacts={}, run_id=run_id)
