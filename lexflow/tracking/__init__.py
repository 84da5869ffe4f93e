"""The MLflow layer: every MLflow call lexflow makes, through ``MlflowClient`` and explicit run
ids (no fluent, process-wide state). Nothing outside this package imports mlflow's tracking or
registry APIs (the evaluator plugin and the gate's registry reads aside, which call in here).

- :mod:`~lexflow.tracking.registry`: resolve ``models:/`` URIs, download models, search versions,
  check that the tracking server answers;
- :mod:`~lexflow.tracking.runs`: start, attach to, resume, nest and end runs; params, metrics, tags;
- :mod:`~lexflow.tracking.tags`: the model-version tag protocol and the description section;
- :mod:`~lexflow.tracking.explanations`: the one writer and the one reader of explanations.json;
- :mod:`~lexflow.tracking.checkpoint`: per-item results saved as run artifacts, resumed after a crash;
- :mod:`~lexflow.tracking.job`: the MLflow job: registry -> :func:`lexflow.engine.explain_decoder`
  -> run artifacts, metrics and version tags (``lexflow explain``, ``mlflow run``, the evaluator).
"""
