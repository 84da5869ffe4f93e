"""Every MLflow call lexflow makes: resolving model URIs, downloading models, writing runs and
model-version tags. Nothing else in lexflow imports mlflow's tracking or registry APIs.

Tag protocol on a model version (so a version is never "complete" with another run's tags):
  begin:    delete every lexflow.* tag, then status=running and run_id=<this run>
  complete: all tags of this run, the description section, then status=complete (or partial,
            when some latents failed) last
  fail:     if run_id is still this run: delete latent tags, status=failed, lexflow.error
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Any

from lexflow import names
from lexflow.adapters.base import ModelInfo
from lexflow.errors import ModelNotFoundError, TrackingError, did_you_mean
from lexflow.record import ExplainResult, merge_description, status_section

_MODELS_URI = re.compile(r"^models:/(?P<rest>.+)$")


@dataclass(frozen=True)
class ResolvedModel:
    """A model URI resolved against the registry.

    Attributes:
        uri: the URI as given; download_uri: what to download (pinned to the version).
        name, version: the registered model version to tag, or None for an unregistered
            logged model (``models:/m-<id>`` with no version).
    """

    uri: str
    download_uri: str
    name: str | None
    version: str | None


def client() -> Any:
    from mlflow import MlflowClient

    return MlflowClient()


def tracking_uri() -> str:
    import mlflow

    return str(mlflow.get_tracking_uri())


def check_reachable(timeout: float = 10.0) -> None:
    """Fail fast with a clear message when an HTTP tracking server does not answer."""
    uri = tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout)
    except requests.RequestException as exc:
        raise TrackingError(
            f"Cannot reach the MLflow tracking server at {uri} ({type(exc).__name__}). Is it "
            f"running? Set {names.ENV_TRACKING_URI} to a reachable server or a sqlite:/// file."
        ) from exc


def _not_found(exc: Exception) -> bool:
    return "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")) or "not found" in str(
        exc
    ).lower()


def _registered_names(c: Any) -> list[str]:
    try:
        return [m.name for m in c.search_registered_models(max_results=200)]
    except Exception:  # listing is only for the hint; never mask the original error
        return []


def resolve(uri: str) -> ResolvedModel:
    """Resolve ``models:/name/N``, ``models:/name@alias``, ``models:/name/latest``, ``models:/m-<id>``."""
    from mlflow.exceptions import MlflowException

    match = _MODELS_URI.match(uri.strip())
    if not match:
        raise ModelNotFoundError(
            f"{uri!r} is not a model URI. Use models:/<name>/<version>, models:/<name>@<alias> "
            "or models:/m-<model id>."
        )
    rest = match.group("rest").strip("/")
    c = client()
    try:
        if rest.startswith("m-") and "/" not in rest and "@" not in rest:
            return _resolve_logged_model(c, uri, rest)
        if "@" in rest:
            name, alias = rest.split("@", 1)
            _require_registered(c, name)
            try:
                mv = c.get_model_version_by_alias(name, alias)
            except MlflowException as exc:
                aliases = sorted(c.get_registered_model(name).aliases)
                raise ModelNotFoundError(
                    f"Model {name!r} has no alias {alias!r}. Aliases: {', '.join(aliases) or 'none'}."
                    + did_you_mean(alias, aliases)
                ) from exc
        elif "/" in rest:
            name, version = rest.rsplit("/", 1)
            _require_registered(c, name)
            if version == "latest":
                versions = c.search_model_versions(f"name='{name}'")
                if not versions:
                    raise ModelNotFoundError(f"Model {name!r} has no versions yet.")
                mv = max(versions, key=lambda v: int(v.version))
            else:
                if not version.isdigit():
                    raise ModelNotFoundError(
                        f"{uri!r}: version must be a number, 'latest' or @alias; got {version!r}."
                    )
                try:
                    mv = c.get_model_version(name, version)
                except MlflowException as exc:
                    have = sorted(int(v.version) for v in c.search_model_versions(f"name='{name}'"))
                    raise ModelNotFoundError(
                        f"Model {name!r} has no version {version}. Versions: "
                        f"{', '.join(map(str, have)) or 'none'}."
                    ) from exc
        else:
            raise ModelNotFoundError(
                f"{uri!r} names no version. Use models:/{rest}/<version>, models:/{rest}@<alias> "
                f"or models:/{rest}/latest."
            )
    except MlflowException as exc:
        raise TrackingError(f"The model registry failed while resolving {uri!r}: {exc}") from exc
    return ResolvedModel(uri, f"models:/{mv.name}/{mv.version}", mv.name, str(mv.version))


def _require_registered(c: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        c.get_registered_model(name)
    except MlflowException as exc:
        if not _not_found(exc):
            raise
        have = _registered_names(c)
        raise ModelNotFoundError(
            f"No registered model named {name!r}. Registered models: "
            f"{', '.join(have[:20]) or 'none'}." + did_you_mean(name, have)
        ) from exc


def _resolve_logged_model(c: Any, uri: str, model_id: str) -> ResolvedModel:
    from mlflow.exceptions import MlflowException

    try:
        c.get_logged_model(model_id)
    except MlflowException as exc:
        raise ModelNotFoundError(f"No logged model with id {model_id!r} ({uri}).") from exc
    for mv in c.search_model_versions(max_results=10_000):
        if getattr(mv, "model_id", None) == model_id:
            return ResolvedModel(uri, uri, mv.name, str(mv.version))
    return ResolvedModel(uri, uri, None, None)


def download(model: ResolvedModel, dst: str) -> tuple[str, ModelInfo]:
    """Download the model directory; return its local path and what its MLmodel file says."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model.download_uri, dst_path=dst)
    except MlflowException as exc:
        raise TrackingError(f"Could not download {model.uri}: {exc}") from exc
    mlmodel = os.path.join(local, "MLmodel")
    if not os.path.exists(mlmodel):
        raise ModelNotFoundError(f"{model.uri} has no MLmodel file: it is not an MLflow model.")
    m = Model.load(mlmodel)
    meta = (m.metadata or {}).get(names.METADATA_KEY) or {}
    if not isinstance(meta, dict):
        meta = {}
    return local, ModelInfo(tuple(m.flavors), dict(meta))


class VersionTags:
    """Writes the lexflow tags and description section of one model version."""

    def __init__(self, name: str, version: str, run_id: str) -> None:
        self.name, self.version, self.run_id = name, version, run_id
        self.c = client()

    def _current(self) -> dict[str, str]:
        return dict(self.c.get_model_version(self.name, self.version).tags)

    def _set(self, key: str, value: str) -> None:
        self.c.set_model_version_tag(self.name, self.version, key, value)

    def _delete(self, keys: list[str]) -> None:
        for key in keys:
            self.c.delete_model_version_tag(self.name, self.version, key)

    def _describe(self, section: str) -> None:
        mv = self.c.get_model_version(self.name, self.version)
        self.c.update_model_version(
            self.name, self.version, description=merge_description(mv.description, section)
        )

    def begin(self, explainer: str) -> None:
        self._delete([k for k in self._current() if k.startswith(names.TAG_PREFIX)])
        self._set(names.TAG_STATUS, names.STATUS_RUNNING)
        self._set(names.TAG_RUN_ID, self.run_id)
        self._set(names.TAG_EXPLAINER, explainer)
        self._describe(status_section(f"lexflow: explanation running (run {self.run_id})."))

    def complete(self, tags: dict[str, str], description: str,
                 status: str = names.STATUS_COMPLETE) -> None:
        if self._current().get(names.TAG_RUN_ID) != self.run_id:
            raise TrackingError(
                f"Another lexflow run took over {self.name} version {self.version} while this one "
                f"({self.run_id}) was running; not overwriting its tags."
            )
        for key, value in tags.items():
            self._set(key, value)
        self._describe(description)
        self._set(names.TAG_STATUS, status)

    def fail(self, message: str) -> None:
        current = self._current()
        if current.get(names.TAG_RUN_ID) not in (None, self.run_id):
            return  # another run owns the version now
        self._delete([k for k in current if k.startswith(names.TAG_LATENT_PREFIX)
                      or k == names.TAG_EXPLAINABLE_FRACTION])
        self._set(names.TAG_RUN_ID, self.run_id)
        self._set(names.TAG_ERROR, message[: names.TAG_VALUE_MAX])
        self._describe(status_section(f"lexflow: explanation failed (run {self.run_id}): {message}"))
        self._set(names.TAG_STATUS, names.STATUS_FAILED)


def log_params(run_id: str, params: dict[str, str]) -> None:
    """Log params the run does not have yet (``mlflow run`` already logged the project's)."""
    from mlflow.entities import Param

    c = client()
    have = c.get_run(run_id).data.params
    new = [Param(k, v[:6000]) for k, v in params.items() if k not in have]
    if new:
        c.log_batch(run_id, params=new)


def log_metrics(run_id: str, metrics: dict[str, float]) -> None:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
    c = client()
    for start in range(0, len(items), 900):
        c.log_batch(run_id, metrics=items[start : start + 900])


def log_outputs(run_id: str, result: ExplainResult, images: dict[str, bytes], report: str) -> None:
    """Write explanations.json, the grids and report.html under lexflow/ in one upload, and each
    grid once more through log_image so the run's image view shows them."""
    import io

    from PIL import Image

    c = client()
    with tempfile.TemporaryDirectory() as tmp:
        for rel, data in images.items():
            path = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        with open(os.path.join(tmp, names.EXPLANATIONS_FILE), "w", encoding="utf-8") as f:
            json.dump(result.to_dict(), f, indent=1)
        with open(os.path.join(tmp, names.REPORT_FILE), "w", encoding="utf-8") as f:
            f.write(report)
        c.log_artifacts(run_id, os.path.join(tmp, names.ARTIFACT_DIR), names.ARTIFACT_DIR)
    for r in result.latents:
        png = images.get(r.image)
        if png:
            c.log_image(run_id, Image.open(io.BytesIO(png)), key=f"latent_{r.label}", step=0)


def set_run_tags(run_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    client().log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


class RunContext:
    """Start (or, under ``mlflow run``, attach to) the run; end it FAILED on any exception."""

    def __init__(self, experiment: str | None = None, run_name: str | None = None) -> None:
        self.experiment, self.run_name = experiment, run_name
        self.run_id = ""

    def __enter__(self) -> RunContext:
        import mlflow

        if self.experiment and not os.environ.get(names.ENV_RUN_ID):
            mlflow.set_experiment(self.experiment)
        try:
            run = mlflow.start_run(run_name=self.run_name)
        except Exception as exc:  # MlflowException or a connection error
            raise TrackingError(f"Could not start an MLflow run: {exc}") from exc
        self.run_id = run.info.run_id
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        import mlflow

        mlflow.end_run(status="FINISHED" if exc_type is None else "FAILED")
