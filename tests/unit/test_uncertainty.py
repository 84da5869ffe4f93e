"""lexflow.uncertainty: similarity and consensus."""

from __future__ import annotations

import numpy as np
import pytest

from lexflow.uncertainty import bow_similarity, consensus


def test_bow_similarity_is_cosine_of_word_counts() -> None:
    sim = bow_similarity(["red ball", "red ball", "blue cube", ""])
    assert sim[0, 1] == pytest.approx(1.0)
    assert sim[0, 2] == pytest.approx(0.0)
    assert sim[3].sum() == 0.0
    assert bow_similarity(["moves left", "moves right"])[0, 1] == pytest.approx(0.5)


def test_consensus_medoid_certainty_and_threshold() -> None:
    answers = ["moves the object left", "moves the object left", "moves the object up", "colour"]
    c = consensus(answers, threshold=0.3)
    assert c.medoid == "moves the object left"
    sim = bow_similarity(answers)
    expected = (sim.sum() - np.trace(sim)) / (4 * 3)
    assert c.certainty == pytest.approx(expected)
    assert c.explainable and c.explanation == c.medoid
    strict = consensus(answers, threshold=0.9)
    assert not strict.explainable and strict.explanation is None and strict.medoid == c.medoid


def test_failed_answers_lower_certainty_and_never_explain() -> None:
    assert consensus(["", ""], threshold=0.0).explanation is None
    half = consensus(["makes it larger", "makes it larger", "", ""], threshold=0.0)
    assert half.certainty == pytest.approx(2 / 12)
    assert half.medoid == "makes it larger"
