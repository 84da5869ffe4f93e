"""MLflow runs, by explicit run id through an ``MlflowClient``: starting, attaching to, resuming
and ending a run, params, metrics, tags and small JSON artifacts. No fluent (process-wide) state
is read or written, except that :func:`open_run` reads the caller's active run to nest under it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from lexflow import names
from lexflow.errors import TrackingError
from lexflow.signals import deferred
from lexflow.tracking.registry import _not_found, client


def log_params(run_id: str, params: dict[str, str]) -> None:
    """Log params the run does not have yet (``mlflow run`` already logged the project's)."""
    from mlflow.entities import Param

    c = client()
    with deferred():
        have = c.get_run(run_id).data.params
    new = [Param(k, v[:6000]) for k, v in params.items() if k not in have]
    if new:
        with deferred():
            c.log_batch(run_id, params=new)


def log_metrics(run_id: str, metrics: dict[str, float]) -> None:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
    c = client()
    for start in range(0, len(items), 900):
        with deferred():
            c.log_batch(run_id, metrics=items[start : start + 900])


def set_run_tags(run_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    with deferred():
        client().log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def run_info(run_id: str) -> dict[str, Any] | None:
    """status, deleted, experiment_id and tags of a run; None when there is no such run."""
    from mlflow.exceptions import MlflowException

    try:
        run = client().get_run(run_id)
    except MlflowException as exc:
        if _not_found(exc):
            return None
        raise
    return {"status": str(run.info.status), "deleted": run.info.lifecycle_stage == "deleted",
            "experiment_id": run.info.experiment_id, "tags": dict(run.data.tags)}


def log_json_artifact(run_id: str, path: str, doc: dict[str, Any]) -> None:
    """Upload ``doc`` as the run artifact ``path`` (a new file; nothing else is touched)."""
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, os.path.basename(path))
        with open(local, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        with deferred():
            client().log_artifact(run_id, local, os.path.dirname(path) or None)


def download_run_json(run_id: str, directory: str) -> dict[str, dict[str, Any]]:
    """Every ``*.json`` artifact directly under ``directory`` of the run: file name -> document.
    A file that does not parse (cut off by a crash mid-upload) is skipped."""
    c = client()
    names_ = [f.path for f in c.list_artifacts(run_id, directory)
              if not f.is_dir and f.path.endswith(".json")]
    out: dict[str, dict[str, Any]] = {}
    if not names_:
        return out
    with tempfile.TemporaryDirectory() as tmp:
        local = c.download_artifacts(run_id, directory, tmp)
        for rel in names_:
            path = os.path.join(local, os.path.basename(rel))
            try:
                with open(path, encoding="utf-8") as f:
                    out[os.path.basename(rel)] = json.load(f)
            except (OSError, ValueError):
                continue
    return out




@dataclass(frozen=True)
class Run:
    """A run lexflow writes into.

    Attributes:
        run_id: the run. owned: whether lexflow started (or resumed) it and so ends it; False
            for a run someone else hands over (the evaluator's, ``mlflow run``'s is ended by us
            as before).
    """

    run_id: str
    owned: bool = True


def _experiment_id(c: Any, experiment: str | None) -> str:
    """The experiment a new run goes to: ``experiment`` by name (created when missing), else the
    one MLflow would use (the caller's ``mlflow.set_experiment``, MLFLOW_EXPERIMENT_ID or _NAME,
    the default experiment); read, never set."""
    from mlflow.tracking.fluent import _get_experiment_id

    if experiment:
        exp = c.get_experiment_by_name(experiment)
        return str(exp.experiment_id) if exp else str(c.create_experiment(experiment))
    return str(_get_experiment_id() or "0")


def _active_run_id() -> str | None:
    """The run the caller has open with ``mlflow.start_run()`` in this thread, if any (read only)."""
    import mlflow

    run = mlflow.active_run()
    return str(run.info.run_id) if run else None


@contextmanager
def open_run(experiment: str | None = None, run_name: str | None = None,
             run_id: str | None = None, into: str | None = None,
             env_run: bool = True) -> Iterator[Run]:
    """The run to write into, ended FINISHED (FAILED on any exception) when lexflow owns it.

    - ``into``: a run someone else owns (the evaluator's): written into, never ended;
    - ``run_id``: resume that run (set RUNNING again);
    - ``MLFLOW_RUN_ID`` (under ``mlflow run``): that run, unless ``env_run`` is False
      (explain-registry: each version gets a run of its own);
    - otherwise a new run; nested under the caller's active fluent run when there is one
      (``mlflow.parentRunId``, in the parent's experiment), else in ``experiment``.
    """
    from mlflow.tracking.context import registry as context_registry

    if into:
        yield Run(into, owned=False)
        return
    c = client()
    try:
        if run_id or (env_run and os.environ.get(names.ENV_RUN_ID)):
            rid = run_id or os.environ[names.ENV_RUN_ID]
            c.update_run(rid, status="RUNNING")
        else:
            parent = _active_run_id()
            tags = context_registry.resolve_tags({})
            if parent:
                experiment_id = c.get_run(parent).info.experiment_id
                tags["mlflow.parentRunId"] = parent
            else:
                experiment_id = _experiment_id(c, experiment)
            rid = c.create_run(experiment_id, tags=tags, run_name=run_name).info.run_id
    except Exception as exc:  # MlflowException or a connection error
        raise TrackingError(f"Could not start an MLflow run: {exc}") from exc
    try:
        yield Run(rid)
    except BaseException:
        with suppress(Exception):  # the server is gone: the original error is the one to report
            c.set_terminated(rid, "FAILED")
        raise
    c.set_terminated(rid, "FINISHED")
