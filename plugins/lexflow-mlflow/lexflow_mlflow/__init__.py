"""MLflow-side glue for lexflow (installed separately: ``pip install -e plugins/lexflow-mlflow``).

Registers the ``lexflow`` evaluator in MLflow's ``mlflow.model_evaluator`` entry-point group, so
``mlflow.models.evaluate(..., model_type="lexflow-latents", evaluators="lexflow")`` explains a
model's latents and ``mlflow.validate_evaluation_results`` can gate on the metrics.
"""

MODEL_TYPE = "lexflow-latents"
