"""explanations.json and the other run outputs: the one writer and the one reader.

The writer puts explanations.json, the grids and report.html under ``lexflow/`` of a run; the
reader turns a run's (or a file's) explanations.json back into an :class:`ExplainResult`
(:meth:`ExplainResult.from_dict`), which calibrate, evaluate, the gate and the quality suite use.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from lexflow import names
from lexflow.errors import ConfigError, TrackingError
from lexflow.record import ExplainResult, report_html
from lexflow.tracking.registry import client


def log_outputs(run_id: str, result: ExplainResult, images: dict[str, bytes] | None = None,
                report: str | None = None) -> None:
    """Write explanations.json, the grids and report.html under lexflow/ in one upload, and each
    explained item's grid once more through log_image so the run's image view shows them.
    ``images`` and ``report`` default to the result's own grids and :func:`report_html`."""
    import io

    from PIL import Image

    images = result.images if images is None else images
    report = report_html(result, images) if report is None else report
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


def read_run(run_id: str) -> ExplainResult:
    """The explanations.json of run ``run_id``, read back."""
    return ExplainResult.from_dict(read_run_doc(run_id), f"{names.EXPLANATIONS_FILE} of run {run_id}")


def read_run_doc(run_id: str) -> dict[str, Any]:
    """The parsed explanations.json of run ``run_id`` (TrackingError when it has none)."""
    with tempfile.TemporaryDirectory(prefix="lexflow-read-") as tmp:
        try:
            path = client().download_artifacts(run_id, names.EXPLANATIONS_FILE, tmp)
        except Exception as exc:  # MlflowException, or an OSError of the artifact store
            raise TrackingError(f"Could not read {names.EXPLANATIONS_FILE} of run {run_id}: "
                                f"{exc}") from exc
        return read_file_doc(Path(path))


def explanations_file(path: Path) -> Path:
    """``path``, or for a directory (a run's downloaded artifacts, its ``lexflow/`` folder) the
    explanations.json inside it (``path`` itself when it holds none)."""
    if path.is_dir():
        for candidate in (path / names.EXPLANATIONS_FILE, path / "explanations.json"):
            if candidate.is_file():
                return candidate
    return path


def read_file_doc(path: Path) -> dict[str, Any]:
    """The parsed explanations.json at ``path`` (ConfigError when it is not JSON)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Could not read {path} as JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path} is not a lexflow explanations.json (not a JSON object).")
    return doc
