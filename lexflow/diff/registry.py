"""Every MLflow call the diff makes: read a version's explanation, load its decoder, fetch its
traversal grids, and record the diff on the candidate (artifact, tags, description line).

URIs resolve through :func:`lexflow.tracking.registry.resolve` (a missing alias lists the aliases
that exist); explanations.json is fetched and checked like the gate does it and read back with
:meth:`lexflow.record.ExplainResult.from_dict`, the one reader.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import asdict
from typing import Any

from lexflow import names
from lexflow.diff.errors import NotExplainedError
from lexflow.diff.match import Side
from lexflow.diff.result import DiffResult, merge_line
from lexflow.errors import TrackingError
from lexflow.record import ExplainResult
from lexflow.tracking import registry as tracking
from lexflow.tracking.runs import log_json_artifact
from lexflow.tracking.tags import version_tags_of

_FINISHED = (names.STATUS_COMPLETE, names.STATUS_PARTIAL)
_ALIAS = re.compile(r"^models:/[^/@]+@(?P<alias>[^/@]+)$")


def _mlflow_error() -> type[Exception]:
    from mlflow.exceptions import MlflowException

    return MlflowException


def _explain_hint(uri: str) -> str:
    return f"Run `lexflow explain {uri}` first (it writes {names.EXPLANATIONS_FILE}), then diff again."


def read_side(uri: str) -> Side:
    """The version ``uri`` names and its finished explanation.

    Raises ModelNotFoundError (no such model/version/alias: the available ones are named),
    NotExplainedError (never explained, or its run did not finish), TrackingError.
    """
    from lexflow.gate.registry import _check_document, _download_explanations

    tracking.check_reachable()
    model = tracking.resolve(uri)
    match = _ALIAS.match(uri.strip())
    alias = match.group("alias") if match else None
    if model.name is not None and model.version is not None:
        tags = version_tags_of(model.name, model.version)
        status, run_id = tags.get(names.TAG_STATUS), tags.get(names.TAG_RUN_ID)
        if not run_id or status not in _FINISHED:
            state = "was never explained" if not run_id else f"has lexflow.status = {status!r}"
            raise NotExplainedError(f"{uri} ({model.download_uri}) {state}: there is no finished "
                                    f"explanation to compare. " + _explain_hint(uri))
        doc = _download_explanations(run_id, uri)
        _check_document(doc, uri, model.name, model.version, run_id)
    else:
        run_id = _latest_run_of(model.uri)
        if run_id is None:
            raise NotExplainedError(f"{uri} is a logged model with no finished lexflow explanation "
                                    f"run. " + _explain_hint(uri))
        doc = _download_explanations(run_id, uri)
    result = ExplainResult.from_dict(doc, f"{names.EXPLANATIONS_FILE} of run {run_id} ({uri})")
    # every latent the run measured: explained, unclear, inactive, failed, and skipped (--top-k)
    latents = {r.index: asdict(r) for r in (*result.latents, *result.skipped)}
    return Side(
        uri=uri, model_uri=model.download_uri, name=model.name, version=model.version,
        alias=alias, run_id=run_id, latent_dim=result.latent_dim, explainer=result.explainer,
        config=dict(result.config), latents=latents,
        traversal_kind=str(result.traversal.get("kind", "latent")),
    )


def _latest_run_of(model_uri: str) -> str | None:
    """The newest finished explanation run of an unregistered logged model."""
    c = tracking.client()
    try:
        runs = c.search_runs(
            [e.experiment_id for e in c.search_experiments()],
            filter_string=f"tags.`lexflow.model_uri` = '{model_uri}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"], max_results=1)
    except _mlflow_error() as exc:
        raise TrackingError(f"Could not search the explanation runs of {model_uri}: {exc}") from exc
    return runs[0].info.run_id if runs else None


def load_decoder(side: Side, tmp: str, device: str = "cpu") -> tuple[Any, tuple[float, float] | None]:
    """The side's decoder and the pixel range its metadata declares (None: detected)."""
    from lexflow.adapters.base import load_decoder as load

    resolved = tracking.ResolvedModel(side.uri, side.model_uri, side.name, side.version)
    local, info = tracking.download(resolved, os.path.join(tmp, side.run_id))
    decoder = load(local, info, device=device)
    return decoder, info.output_range or getattr(decoder, "output_range", None)


def grids(side: Side, indices: set[int]) -> dict[int, bytes]:
    """The traversal grid PNG of each latent in ``indices`` that the run wrote."""
    c = tracking.client()
    out: dict[int, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="lexflow-diff-") as tmp:
        for i in sorted(indices):
            rec = side.latents.get(i) or {}
            path = rec.get("image") or names.traversal_path(i, side.latent_dim)
            try:
                local = c.download_artifacts(side.run_id, str(path), tmp)
                with open(local, "rb") as f:
                    out[i] = f.read()
            except (_mlflow_error(), OSError):
                continue  # the page says the grid is missing
    return out


def record(result: DiffResult) -> list[str]:
    """Write the diff onto the candidate: ``lexflow/diff/<against>.json`` on its explanation run,
    ``lexflow.diff.<against>.*`` version tags and a line in the owned description section.
    Returns what was written (for the CLI)."""
    b = result.b
    written = [f"artifact {names.diff_path(result.against)} on run {b.run_id}"]
    log_json_artifact(b.run_id, names.diff_path(result.against), result.to_dict())
    if b.name is None or b.version is None:
        return written
    c = tracking.client()
    try:
        current = version_tags_of(b.name, b.version)
        if current.get(names.TAG_RUN_ID) != b.run_id:
            raise TrackingError(
                f"{b.model_uri} was explained again (run {current.get(names.TAG_RUN_ID)}) while the "
                f"diff read run {b.run_id}; not recording a diff about the old run.")
        prefix = f"{names.TAG_DIFF_PREFIX}{result.against}."
        tags = result.version_tags()
        for key in [k for k in current if k.startswith(prefix) and k not in tags]:
            c.delete_model_version_tag(b.name, b.version, key)
        for key, value in tags.items():
            c.set_model_version_tag(b.name, b.version, key, value)
        written.append(f"{len(tags)} tags {prefix}*")
        mv = c.get_model_version(b.name, b.version)
        description = merge_line(mv.description, result.description_line(), result.against)
        if description is not None:
            c.update_model_version(b.name, b.version, description=description)
            written.append(f"description line {result.description_line()!r}")
        else:
            written.append("no description line (no lexflow section, or the description would "
                           "pass 5,000 characters)")
    except _mlflow_error() as exc:
        raise TrackingError(f"Could not record the diff on {b.model_uri}: {exc}") from exc
    return written
