"""The MLflow registry and server: resolving model URIs, downloading models, searching versions,
and checking that the tracking server answers. Every call goes through an ``MlflowClient``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from lexflow import names
from lexflow.adapters.base import ModelInfo
from lexflow.errors import ConfigError, ModelNotFoundError, TrackingError, did_you_mean

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


# MLflow's HTTP settings lexflow's CLI sets when the user has not (MLflow's defaults: 7 retries,
# backoff factor 2, 120 s timeout, keep a run waiting for many minutes when the tracking server is
# gone; these give up after about a minute and then fail clearly, see wait_for_server). Library
# code never writes the environment; lexflow.cli.main applies them to its own process.
HTTP_DEFAULTS = {names.ENV_HTTP_MAX_RETRIES: "5", names.ENV_HTTP_BACKOFF_FACTOR: "1",
                 names.ENV_HTTP_TIMEOUT: "30"}


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
