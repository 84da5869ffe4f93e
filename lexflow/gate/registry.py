"""Every MLflow call the gate makes: read a version's lexflow tags and explanation, record the
verdict as version tags, and move an alias. URI resolution reuses :func:`lexflow.tracking.registry.resolve`.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from typing import Any

from lexflow import names
from lexflow.errors import TrackingError
from lexflow.gate.checks import GateResult, VersionEvidence
from lexflow.gate.errors import ForeignSchemaError, NotExplainedError, StaleExplanationError
from lexflow.record import ExplainResult, bounded
from lexflow.tracking import registry as tracking

_FINISHED = (names.STATUS_COMPLETE, names.STATUS_PARTIAL)


def _mlflow_error() -> type[Exception]:
    from mlflow.exceptions import MlflowException

    return MlflowException


def read_version(model_uri: str) -> VersionEvidence:
    """What the registry holds about the version ``model_uri`` names, checked for consistency.

    Raises NotExplainedError, StaleExplanationError or ForeignSchemaError (exit 2) when the
    version cannot be judged, and TrackingError when the registry cannot be read.
    """
    tracking.check_reachable()
    model = tracking.resolve(model_uri)
    if model.name is None or model.version is None:
        raise NotExplainedError(
            f"{model_uri} is a logged model with no registered version; the gate judges registered "
            "model versions (models:/<name>/<version> or models:/<name>@<alias>)."
        )
    c = tracking.client()
    try:
        mv = c.get_model_version(model.name, model.version)
    except _mlflow_error() as exc:
        raise TrackingError(f"Could not read {model.download_uri}: {exc}") from exc
    tags = dict(mv.tags or {})
    uri = model.download_uri
    status, run_id = tags.get(names.TAG_STATUS), tags.get(names.TAG_RUN_ID)
    if status is None and run_id is None:
        raise NotExplainedError(
            f"{uri} was never explained: it has no {names.TAG_STATUS} or {names.TAG_RUN_ID} tag. "
            f"Run `lexflow explain {uri}` first."
        )
    doc: dict[str, Any] | None = None
    start_ms: int | None = None
    if status in _FINISHED:
        if not run_id:
            raise StaleExplanationError(
                f"{uri} is tagged {names.TAG_STATUS}={status!r} but has no {names.TAG_RUN_ID} tag, "
                f"so its explanation cannot be found. Run `lexflow explain {uri}` again."
            )
        try:
            run = c.get_run(run_id)
        except _mlflow_error() as exc:
            raise StaleExplanationError(
                f"{uri} points at explanation run {run_id}, which cannot be read ({exc}); it was "
                f"probably deleted. Run `lexflow explain {uri}` again."
            ) from exc
        if str(getattr(run.info, "lifecycle_stage", "")) == "deleted":
            raise StaleExplanationError(
                f"{uri} points at explanation run {run_id}, which was deleted: its explanation "
                f"no longer counts. Run `lexflow explain {uri}` again."
            )
        start_ms = int(run.info.start_time) if run.info.start_time is not None else None
        doc = _download_explanations(run_id, uri)
        _check_document(doc, uri, model.name, model.version, run_id)
        # What the checks see is what the one reader of explanations.json reads.
        doc = ExplainResult.from_dict(doc, f"{uri}: {names.EXPLANATIONS_FILE} of run {run_id}").to_dict()
    elif run_id:
        try:
            start_ms = int(c.get_run(run_id).info.start_time)
        except (_mlflow_error(), TypeError):
            start_ms = None
    return VersionEvidence(model.name, model.version, tags, doc, start_ms,
                           int(mv.creation_timestamp))


def _download_explanations(run_id: str, uri: str) -> dict[str, Any]:
    import mlflow

    with tempfile.TemporaryDirectory(prefix="lexflow-gate-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=names.EXPLANATIONS_FILE, dst_path=tmp)
        except Exception as exc:  # MlflowException, or an OSError from the artifact store
            raise ForeignSchemaError(
                f"{uri}: explanation run {run_id} has no {names.EXPLANATIONS_FILE} artifact "
                f"({type(exc).__name__}). It was not written by lexflow, or its upload failed; "
                f"run `lexflow explain {uri}` again."
            ) from exc
        try:
            with open(local, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ForeignSchemaError(
                f"{uri}: {names.EXPLANATIONS_FILE} of run {run_id} is not readable JSON ({exc})."
            ) from exc
        finally:
            if os.path.exists(local):
                os.remove(local)
    if not isinstance(doc, dict):
        raise ForeignSchemaError(f"{uri}: {names.EXPLANATIONS_FILE} of run {run_id} is not a JSON object.")
    return doc


def _check_document(doc: dict[str, Any], uri: str, name: str, version: str, run_id: str) -> None:
    schema = doc.get("schema")
    if schema != names.EXPLANATIONS_SCHEMA:
        newer = isinstance(schema, str) and schema.startswith("lexflow.explanations/")
        hint = ("it was written by another lexflow version: install a lexflow that reads it, or "
                f"explain the version again with this one (`lexflow explain {uri}`)." if newer else
                "it was not written by lexflow.")
        raise ForeignSchemaError(
            f"{uri}: the explanation of run {run_id} has schema {schema!r}; this gate reads "
            f"{names.EXPLANATIONS_SCHEMA!r}: {hint}"
        )
    model = doc.get("model") or {}
    described = f"models:/{model.get('name')}/{model.get('version')}"
    if doc.get("run_id") != run_id or (model.get("name"), str(model.get("version"))) != (name, version):
        raise StaleExplanationError(
            f"{uri} is tagged with explanation run {run_id}, but that explanation describes "
            f"{described} (run {doc.get('run_id')}): the tags are stale or were copied from another "
            f"version. Run `lexflow explain {uri}` again."
        )


def record(result: GateResult, name: str, version: str) -> None:
    """Write the verdict as ``lexflow.gate.*`` tags (old gate tags not rewritten are removed)."""
    c = tracking.client()
    current = dict(c.get_model_version(name, version).tags or {})
    if result.run_id and current.get(names.TAG_RUN_ID) != result.run_id:
        raise TrackingError(
            f"models:/{name}/{version} was explained again (run {current.get(names.TAG_RUN_ID)}) while "
            f"the gate judged run {result.run_id}; not recording a verdict about the old run."
        )
    tags = {
        names.TAG_GATE_CHECKED_AT: result.checked_at,
        names.TAG_GATE_POLICY_SHA256: result.policy_sha256,
    }
    if result.run_id:
        tags[names.TAG_GATE_RUN_ID] = result.run_id
    if result.failures:
        tags[names.TAG_GATE_FAILURES] = bounded(result.message())
    if result.warnings:
        tags[names.TAG_GATE_WARNINGS] = bounded("\n".join(w.message for w in result.warnings))
    tags[names.TAG_GATE_STATUS] = result.status  # last: a reader that sees it sees the rest
    try:
        # The old status goes first and the new one comes last, so a reader that sees a status
        # sees the details that belong to it.
        stale = [k for k in current if k.startswith(names.TAG_GATE_PREFIX)
                 and (k not in tags or k == names.TAG_GATE_STATUS)]
        for key in sorted(stale, key=lambda k: k != names.TAG_GATE_STATUS):
            c.delete_model_version_tag(name, version, key)
        for key, value in tags.items():
            c.set_model_version_tag(name, version, key, value)
    except _mlflow_error() as exc:
        raise TrackingError(
            f"Could not record the gate's verdict on models:/{name}/{version}: {exc}") from exc


_ALIAS = re.compile(r"[A-Za-z0-9_-]{1,255}")
_RESERVED_ALIAS = re.compile(r"(?i)latest|v\d+")


def check_alias(alias: str) -> None:
    """Refuse an alias MLflow would refuse, before anything is judged or written (exit 2):
    letters, digits, ``_`` and ``-``; not ``latest`` and not ``v<number>`` (version names)."""
    from lexflow.errors import brief
    from lexflow.gate.errors import GateInputError

    if not _ALIAS.fullmatch(alias) or _RESERVED_ALIAS.fullmatch(alias):
        raise GateInputError(
            f"--promote: {brief(alias)} cannot be an alias. Use letters, digits, '_' and '-' (at "
            "most 255); 'latest' and 'v<number>' are reserved for versions. E.g. --promote champion."
        )


def promote(name: str, version: str, alias: str) -> None:
    """Point ``alias`` at the version."""
    try:
        tracking.client().set_registered_model_alias(name, alias, version)
    except _mlflow_error() as exc:
        raise TrackingError(f"Could not set alias {alias!r} on models:/{name}/{version}: {exc}") from exc
