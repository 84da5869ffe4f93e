"""The MLflow calls of the quality package: read a run's explanations.json, log metrics on it.

Writes go through :mod:`lexflow.tracking` (one place that logs metrics); only the artifact
download, which :mod:`lexflow.tracking` does not offer, is here.
"""

from __future__ import annotations

import json
import tempfile
from typing import Any

from lexflow import names
from lexflow.errors import ConfigError, TrackingError
from lexflow.tracking import registry as tracking
from lexflow.tracking import runs as tracking_runs


def download_explanations(run_id: str, workdir: str | None = None) -> dict[str, Any]:
    """The parsed ``lexflow/explanations.json`` of run ``run_id``."""
    from mlflow.exceptions import MlflowException

    tracking.check_reachable()
    if not run_id:
        raise ConfigError("No run id or file given: pass a path to explanations.json or a run id.")
    c = tracking.client()
    try:
        c.get_run(run_id)
    except MlflowException as exc:
        raise ConfigError(
            f"{run_id!r} is neither a file nor a run in {tracking.tracking_uri()}: {exc.message}"
        ) from exc
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        try:
            path = c.download_artifacts(run_id, names.EXPLANATIONS_FILE, tmp)
        except (MlflowException, OSError) as exc:
            raise ConfigError(
                f"Run {run_id} has no {names.EXPLANATIONS_FILE}: was it made by `lexflow explain`?"
            ) from exc
        try:
            with open(path, encoding="utf-8") as f:
                doc: dict[str, Any] = json.load(f)
        except (OSError, ValueError) as exc:
            raise TrackingError(f"Could not read {names.EXPLANATIONS_FILE} of run {run_id}: {exc}") from exc
    return doc


def log_metrics(run_id: str, metrics: dict[str, float]) -> None:
    """Log the quality metrics on the run (as the pipeline logs its own)."""
    from mlflow.exceptions import MlflowException

    try:
        tracking_runs.log_metrics(run_id, metrics)
    except MlflowException as exc:
        raise TrackingError(f"Could not log the quality metrics on run {run_id}: {exc}") from exc
