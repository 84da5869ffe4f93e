"""lexflow.stages.evidence: what a traversal changes, measured."""

from __future__ import annotations

import json

import pytest
from models.blob import BlobDecoder, traverse

from lexflow.config import ExplainConfig
from lexflow.explainers.measure import row_answers
from lexflow.stages.evidence import measure_traversal


@pytest.mark.parametrize(
    ("index", "prop", "words"),
    [(0, "x", "left to right"), (1, "y", "top to bottom"), (2, "scale", "larger"), (3, "hue", "colour")],
)
def test_evidence_names_the_property_that_moves(index: int, prop: str, words: str) -> None:
    ev = measure_traversal(index, traverse(BlobDecoder(), ExplainConfig(rows=3), index))
    assert ev.active
    assert ev.properties[0].name == prop
    assert ev.properties[0].agreement == 1.0
    assert all(words in a for a in row_answers(ev))


def test_inactive_latent_is_not_explained() -> None:
    ev = measure_traversal(4, traverse(BlobDecoder(), ExplainConfig(rows=3), 4))
    assert not ev.active and ev.total_change < 1e-6
    assert ev.moved() == []


def test_evidence_records_direction_and_region() -> None:
    ev = measure_traversal(0, traverse(BlobDecoder(), ExplainConfig(rows=2), 0))
    x = next(p for p in ev.properties if p.name == "x")
    assert x.start < 0.35 and x.end > 0.65  # left -> right, fractions of the width
    assert len(ev.step_change) == 4
    flipped = measure_traversal(0, traverse(BlobDecoder(), ExplainConfig(rows=2), 0)[:, ::-1])
    assert "right to left" in row_answers(flipped)[0]
    json.dumps(ev.to_dict())  # serialisable as is
