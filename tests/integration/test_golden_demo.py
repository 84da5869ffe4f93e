"""A run on the shipped demo model writes the same explanations.json as the stored golden file,
byte for byte, apart from the run id and the time (which differ on every run).

Regenerate the golden file only for an intended change of the results or the schema:
``LEXFLOW_UPDATE_GOLDEN=1 .venv/bin/pytest tests/integration/test_golden_demo.py``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden"


def _normalised(text: str, run_id: str) -> str:
    """The file with the run id and the creation time replaced by fixed placeholders."""
    text = text.replace(run_id, "<run_id>")
    return re.sub(r'"created": "[^"]*"', '"created": "<created>"', text)


@pytest.mark.parametrize("top_k, golden", [(None, "demo_explanations.json"),
                                            (3, "demo_explanations_top3.json")])
def test_demo_run_writes_the_golden_explanations(sqlite_tracking: str, no_progress: None,
                                                 top_k: int | None, golden: str) -> None:
    from mlflow import MlflowClient

    import lexflow
    from lexflow import names
    from lexflow.demo.register import register

    name, version, _ = register("lexflow-golden-demo", progress=False)
    result = lexflow.explain(f"models:/{name}/{version}",
                             lexflow.ExplainConfig(explainer="measure", top_k=top_k), progress=False)
    local = MlflowClient().download_artifacts(result.run_id, names.EXPLANATIONS_FILE, ".")
    got = _normalised(Path(local).read_text(encoding="utf-8"), result.run_id)
    doc = json.loads(got)
    assert doc["model"] == {"name": name, "version": version}
    if os.environ.get("LEXFLOW_UPDATE_GOLDEN"):
        (GOLDEN_DIR / golden).write_text(got, encoding="utf-8")
    assert got == (GOLDEN_DIR / golden).read_text(encoding="utf-8")
