"""Every MLflow call lexflow makes: resolving model URIs, downloading models, writing runs and
model-version tags. Nothing else in lexflow imports mlflow's tracking or registry APIs.

Tag protocol on a model version (so a version is never "complete" with another run's tags):
  begin:    run_id=<this run> first (claims the version), then delete every other lexflow.* tag,
            status=running; re-read and claim again if another run's write landed in between
  complete: if run_id is still this run: all tags of this run (never run_id itself, which would
            steal the version back), the description section; re-read, delete tags no run of ours
            wrote and rewrite changed ones; then status=complete (or partial, when some latents
            failed) last; re-read once more: if another run claimed the version meanwhile, put
            status back to running (that run will write its own end state) and report the takeover
  fail:     if run_id is still this run: delete latent tags, status=failed, lexflow.error
MLflow has no compare-and-set on tags; the re-reads close the windows a real race opens
(tests/test_crash.py races two processes and two writers against a real server).
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
from lexflow.errors import ConfigError, ModelNotFoundError, TrackingError, did_you_mean
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
    name_part = rest.split("@", 1)[0].rsplit("/", 1)[0] if ("@" in rest or "/" in rest) else rest
    if not name_part.strip() or ("@" in rest and not rest.split("@", 1)[1].strip()):
        raise ModelNotFoundError(
            f"{uri!r} names no model (or no alias). Use models:/<name>/<version>, "
            "models:/<name>@<alias> or models:/m-<model id>."
        )
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
        if getattr(exc, "error_code", "") == "INVALID_PARAMETER_VALUE":  # the URI, not the server
            raise ModelNotFoundError(f"{uri!r} is not a valid model URI: {exc.message}") from exc
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
    # MLflow 3 stores the link in the version's source ("models:/m-<id>"); model_id may be None.
    for mv in c.search_model_versions(max_results=10_000):
        if getattr(mv, "model_id", None) == model_id or mv.source == f"models:/{model_id}":
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


# What MLflow's SQL store answers when two writers set or delete the same tag at once (it upserts
# by select-then-insert): PostgreSQL, SQLite and MySQL wordings, and SQLAlchemy's stale delete.
_STORE_RACE = ("duplicate key", "UniqueViolation", "UNIQUE constraint failed", "Duplicate entry",
               "were matched", "StaleDataError")


def _retry_store_race(call: Any, attempts: int = 4) -> None:
    """Run ``call``; retry it when it lost a race inside the store (the retry sees the other
    writer's row and updates or deletes it)."""
    import time

    for attempt in range(attempts):
        try:
            call()
            return
        except Exception as exc:  # MlflowException/RestException carrying the store's error
            if attempt == attempts - 1 or not any(m in str(exc) for m in _STORE_RACE):
                raise
            time.sleep(0.05 * (attempt + 1))


class VersionTags:
    """Writes the lexflow tags and description section of one model version."""

    def __init__(self, name: str, version: str, run_id: str) -> None:
        self.name, self.version, self.run_id = name, version, run_id
        self.c = client()
        self.began = False  # begin() was called (its first write may be all that happened)

    def _current(self) -> dict[str, str]:
        return dict(self.c.get_model_version(self.name, self.version).tags)

    def _set(self, key: str, value: str) -> None:
        _retry_store_race(lambda: self.c.set_model_version_tag(self.name, self.version, key, value))

    def _delete(self, keys: list[str]) -> None:
        for key in keys:
            _retry_store_race(lambda key=key: self.c.delete_model_version_tag(
                self.name, self.version, key))

    def _describe(self, section: str) -> None:
        mv = self.c.get_model_version(self.name, self.version)
        self.c.update_model_version(
            self.name, self.version, description=merge_description(mv.description, section)
        )

    def begin(self, explainer: str) -> None:
        # The status goes to running before anything else changes: a begin interrupted at any
        # point never leaves the previous run's `complete` over this run's id or tags.
        self.began = True
        self._set(names.TAG_STATUS, names.STATUS_RUNNING)
        for _ in range(3):
            self._set(names.TAG_RUN_ID, self.run_id)
            self._delete([k for k in self._current()
                          if k.startswith(names.TAG_PREFIX) and k != names.TAG_RUN_ID])
            self._set(names.TAG_STATUS, names.STATUS_RUNNING)
            self._set(names.TAG_EXPLAINER, explainer)
            now = self._current()
            if (now.get(names.TAG_RUN_ID) != self.run_id
                    or now.get(names.TAG_STATUS) == names.STATUS_RUNNING):
                break  # ours and clean, or a newer run has claimed it (it then owns the tags)
        self._describe(status_section(f"lexflow: explanation running (run {self.run_id})."))

    def _taken_over(self) -> TrackingError:
        return TrackingError(
            f"Another lexflow run took over {self.name} version {self.version} while this one "
            f"({self.run_id}) was running; not overwriting its tags."
        )

    def complete(self, tags: dict[str, str], description: str,
                 status: str = names.STATUS_COMPLETE) -> None:
        if self._current().get(names.TAG_RUN_ID) != self.run_id:
            raise self._taken_over()
        want = {k: v for k, v in tags.items() if k != names.TAG_RUN_ID}
        for key, value in want.items():
            self._set(key, value)
        self._describe(description)
        keep = set(want) | {names.TAG_RUN_ID, names.TAG_STATUS}
        now = self._current()
        if now.get(names.TAG_RUN_ID) != self.run_id:
            raise self._taken_over()
        self._delete([k for k in now if k.startswith(names.TAG_PREFIX) and k not in keep])
        for key, value in want.items():
            if now.get(key) != value:
                self._set(key, value)
        self._set(names.TAG_STATUS, status)
        now = self._current()
        if now.get(names.TAG_RUN_ID) != self.run_id:
            # Our status write may have landed after the other run's begin: give the version
            # back to that run's own protocol (it writes its terminal status itself).
            if now.get(names.TAG_STATUS) == status and self._run_active(now.get(names.TAG_RUN_ID)):
                self._set(names.TAG_STATUS, names.STATUS_RUNNING)
            raise self._taken_over()

    def _run_active(self, run_id: str | None) -> bool:
        if not run_id:
            return True
        try:
            return str(self.c.get_run(run_id).info.status) == "RUNNING"
        except Exception:  # unknown run: assume it still works on the version
            return True

    def fail(self, message: str) -> None:
        current = self._current()
        owner = current.get(names.TAG_RUN_ID)
        if owner not in (None, self.run_id):
            # Another run's id: it owns the version, unless this run's begin was cut short right
            # after setting `running` over a run that has ended (then the failure is ours).
            interrupted = (getattr(self, "began", False)
                           and current.get(names.TAG_STATUS) == names.STATUS_RUNNING
                           and not self._run_active(owner))
            if not interrupted:
                return
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


def log_outputs(run_id: str, result: ExplainResult, images: dict[str, bytes], report: str,
                extra: dict[str, Any] | None = None) -> None:
    """Write explanations.json (with ``extra`` top-level fields), the grids and report.html under
    lexflow/ in one upload, and each grid once more through log_image so the run's image view
    shows them."""
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
            json.dump({**result.to_dict(), **(extra or {})}, f, indent=1)
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
    """Start (or, under ``mlflow run``, attach to; or resume ``run_id``) the run; end it FAILED on
    any exception."""

    def __init__(self, experiment: str | None = None, run_name: str | None = None,
                 run_id: str | None = None) -> None:
        self.experiment, self.run_name, self.resume_id = experiment, run_name, run_id
        self.run_id = ""

    def __enter__(self) -> RunContext:
        import mlflow

        try:
            if self.resume_id:  # continue the run in its own experiment
                experiment_id = client().get_run(self.resume_id).info.experiment_id
                mlflow.set_experiment(experiment_id=experiment_id)
                run = mlflow.start_run(run_id=self.resume_id)
            else:
                if self.experiment and not os.environ.get(names.ENV_RUN_ID):
                    mlflow.set_experiment(self.experiment)
                run = mlflow.start_run(run_name=self.run_name)
        except Exception as exc:  # MlflowException or a connection error
            raise TrackingError(f"Could not start an MLflow run: {exc}") from exc
        self.run_id = run.info.run_id
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        import mlflow

        try:
            mlflow.end_run(status="FINISHED" if exc_type is None else "FAILED")
        except Exception:
            if exc_type is None:
                raise
            # The server is gone: the original error is the one to report (end_run has already
            # forgotten the run locally).


# --- crash safety and bulk explanation (lexflow.resume, lexflow.registry_scan) ------------------

def configure_http() -> None:
    """Bounded retries for every MLflow HTTP call of this process, unless the user chose others.

    MLflow's defaults (7 retries, backoff factor 2, 120 s timeout) keep a run waiting for many
    minutes when the tracking server is gone; lexflow's (5 retries, factor 1, 30 s) give up after
    about a minute and then fail clearly (see :func:`wait_for_server`).
    """
    os.environ.setdefault(names.ENV_HTTP_MAX_RETRIES, "5")
    os.environ.setdefault(names.ENV_HTTP_BACKOFF_FACTOR, "1")
    os.environ.setdefault(names.ENV_HTTP_TIMEOUT, "30")


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) says the tracking server did not answer."""
    import requests

    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (requests.ConnectionError, requests.Timeout, ConnectionError)):
            return True
        text = str(e)
        if "Max retries exceeded" in text or "Connection refused" in text:
            return True
        e = e.__cause__ or e.__context__
    return False


def wait_for_server(timeout: float) -> bool:
    """Poll the tracking server's /health until it answers (True) or ``timeout`` s pass (False)."""
    import time

    import requests

    uri = tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return True
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(uri.rstrip("/") + "/health", timeout=5).ok:
                return True
        except requests.RequestException:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def version_tags_of(name: str, version: str) -> dict[str, str]:
    return dict(client().get_model_version(name, version).tags)


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


def search_versions(filter_string: str | None) -> list[dict[str, Any]]:
    """Every model version matching an MLflow filter (``name LIKE 'vae%'``), oldest first:
    name, version and tags, read page by page."""
    from mlflow.exceptions import MlflowException

    c = client()
    out: list[dict[str, Any]] = []
    token: str | None = None
    try:
        while True:
            page = c.search_model_versions(filter_string or "", max_results=1000, page_token=token)
            out.extend({"name": mv.name, "version": str(mv.version), "tags": dict(mv.tags)}
                       for mv in page)
            token = getattr(page, "token", None)
            if not token:
                break
    except MlflowException as exc:
        if is_connection_error(exc):
            raise TrackingError(f"The MLflow tracking server at {tracking_uri()} stopped "
                                f"answering while searching model versions: {exc}") from exc
        bad_input = "INVALID_PARAMETER_VALUE" in str(getattr(exc, "error_code", ""))
        raise (ConfigError if bad_input else TrackingError)(
            f"The model registry rejected the filter {filter_string!r}: {exc}. Filters look like "
            "\"name LIKE 'vae%'\" or \"name = 'vae'\"."
        ) from exc
    out.sort(key=lambda v: (v["name"], int(v["version"])))
    return out
