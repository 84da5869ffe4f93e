"""lexflow.explainers.measure: answers from measurements."""

from __future__ import annotations

from models.blob import BlobDecoder, traverse

from lexflow.config import ExplainConfig
from lexflow.explainers import get_explainer
from lexflow.explainers.base import ExplainRequest
from lexflow.stages.evidence import measure_traversal


def test_measure_explainer_answers_per_row_and_comparison() -> None:
    frames = traverse(BlobDecoder(), ExplainConfig(rows=3), 0)
    ev = measure_traversal(0, frames)
    request = ExplainRequest(index=0, label="00", bias="disentanglement", values=(-3, 0, 3),
                             grid_png=b"", evidence=ev, samples=5, comparison_evidence=ev)
    response = get_explainer("measure").explain(request)
    assert len(response.answers) == 6 and response.calls == 0
