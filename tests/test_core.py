"""Unit tests of the pure stages: options, perturbation, decode checks, evidence, the measure
explainer, uncertainty and the written records. Tiny procedural decoders, no MLflow."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from models.blob import BlobDecoder, NoDecode, WrongShape

from lexflow import names
from lexflow.adapters.pytorch_vae import PyTorchVAEAdapter
from lexflow.config import ExplainConfig, parse_latents
from lexflow.errors import ConfigError, DecodeError, ModelContractError
from lexflow.explainers import get_explainer
from lexflow.explainers.base import ExplainRequest
from lexflow.explainers.measure import row_answers
from lexflow.stages.decode import BatchDecoder, decode_traversals, detect_range
from lexflow.stages.evidence import measure_traversal
from lexflow.stages.plan import TraversalPlan
from lexflow.uncertainty import bow_similarity, consensus


def traverse(model: torch.nn.Module, config: ExplainConfig, index: int) -> np.ndarray:
    adapter = PyTorchVAEAdapter(model, device="cpu")
    plan = TraversalPlan.from_config(adapter.latent_dim, config)
    batch = BatchDecoder(adapter, batch_size=config.batch_size)
    (t,) = decode_traversals(batch, plan.codes, [index], plan.rows, plan.values)
    return t.frames


# --- options ---------------------------------------------------------------------------------

def test_parse_latents_forms() -> None:
    assert parse_latents("all") is None
    assert parse_latents("5,0,3") == (0, 3, 5)
    assert parse_latents("2-4,7") == (2, 3, 4, 7)
    with pytest.raises(ConfigError, match="could not read 'x'"):
        parse_latents("1,x")
    with pytest.raises(ConfigError, match="start at 0"):
        parse_latents([-1])


def test_config_collects_every_problem() -> None:
    with pytest.raises(ConfigError) as err:
        ExplainConfig(steps=1, threshold=2.0, bias="disentangle", device="tpu")
    msg = str(err.value)
    assert "steps must be an integer >= 2" in msg and "got 1" in msg
    assert "threshold must be between 0 and 1; got 2.0" in msg
    assert "Did you mean 'disentanglement'?" in msg
    assert "device must be one of" in msg


def test_latents_out_of_range_names_the_model_size() -> None:
    with pytest.raises(ConfigError, match=r"latents \[99\] out of range: this model has 10 latents"):
        ExplainConfig(latents=(0, 99)).latent_indices(10)


def test_frame_values_increase_from_minus_to_plus_span() -> None:
    assert ExplainConfig(steps=5, span=3.0).frame_values() == [-3.0, -1.5, 0.0, 1.5, 3.0]


# --- perturbation and decode ---------------------------------------------------------------

def test_plan_sweeps_only_the_chosen_latent() -> None:
    plan = TraversalPlan.from_config(4, ExplainConfig(rows=3, steps=5, seed=7))
    z = plan.codes(2).reshape(3, 5, 4)
    assert np.allclose(z[:, :, 2], [-3, -1.5, 0, 1.5, 3])
    for other in (0, 1, 3):
        assert np.allclose(z[:, :, other], plan.base_codes[:, None, other])
    again = TraversalPlan.from_config(4, ExplainConfig(rows=3, steps=5, seed=7))
    assert np.array_equal(plan.base_codes, again.base_codes)


def test_comparison_row_clamps_the_partner() -> None:
    plan = TraversalPlan.from_config(4, ExplainConfig(rows=2, steps=5))
    z = plan.comparison_codes(0, 3).reshape(2, 5, 4)
    assert np.allclose(z[0, :, 3], plan.base_codes[0, 3])
    assert np.allclose(z[1, :, 3], plan.clamp_value(3))
    assert abs(plan.clamp_value(3) - plan.base_codes[0, 3]) > 1.0


def test_decode_rejects_wrong_shape_nan_and_missing_contract() -> None:
    with pytest.raises(ModelContractError, match=r"32 channels \(shape \(10, 32, 32, 3\)\).*\[N, C, H, W\]"):
        BatchDecoder(PyTorchVAEAdapter(WrongShape(), device="cpu")).decode(np.zeros((10, 5), np.float32))
    nan = BatchDecoder(PyTorchVAEAdapter(BlobDecoder(nan_above=2.0), device="cpu"))
    with pytest.raises(DecodeError, match="NaN or Inf for 1 of 2 codes"):
        nan.decode(np.array([[0, 0, 0, 0, 0], [3, 0, 0, 0, 0]], np.float32))
    with pytest.raises(ModelContractError, match="no decode"):
        PyTorchVAEAdapter(NoDecode(), device="cpu")
    model = BlobDecoder()
    model.latent_dim = "5"  # type: ignore[assignment]
    with pytest.raises(ModelContractError, match="integer attribute latent_dim"):
        PyTorchVAEAdapter(model, device="cpu")


def test_pixel_range_detected_and_normalised() -> None:
    assert detect_range(np.array([-1.0, 0.5])) == (-1.0, 1.0)
    assert detect_range(np.array([0.0, 200.0])) == (0.0, 255.0)
    assert detect_range(np.array([0.0, 1.0])) == (0.0, 1.0)
    z = np.zeros((3, 5), np.float32)
    a = BatchDecoder(PyTorchVAEAdapter(BlobDecoder(), device="cpu")).decode(z)
    b = BatchDecoder(PyTorchVAEAdapter(BlobDecoder(out_range="-11"), device="cpu")).decode(z)
    assert b.min() >= 0 and np.allclose(a, b, atol=1e-5)


def test_batched_decode_matches_one_at_a_time() -> None:
    adapter = PyTorchVAEAdapter(BlobDecoder(), device="cpu")
    z = np.random.default_rng(0).standard_normal((37, 5)).astype(np.float32)
    together = BatchDecoder(adapter, batch_size=16).decode(z)
    single = np.concatenate([BatchDecoder(adapter, batch_size=1).decode(z[i : i + 1]) for i in range(37)])
    assert np.allclose(together, single, atol=1e-6)


# --- evidence and the measure explainer ----------------------------------------------------

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


def test_measure_explainer_answers_per_row_and_comparison() -> None:
    frames = traverse(BlobDecoder(), ExplainConfig(rows=3), 0)
    ev = measure_traversal(0, frames)
    request = ExplainRequest(index=0, label="00", bias="disentanglement", values=(-3, 0, 3),
                             grid_png=b"", evidence=ev, samples=5, comparison_evidence=ev)
    response = get_explainer("measure").explain(request)
    assert len(response.answers) == 6 and response.calls == 0


def test_unknown_explainer_lists_available_and_suggests() -> None:
    with pytest.raises(ConfigError, match=r"Unknown explainer 'mesure'.*measure.*Did you mean 'measure'"):
        get_explainer("mesure")
    with pytest.raises(ConfigError, match="names no model"):
        get_explainer("openai:/")


# --- uncertainty ---------------------------------------------------------------------------

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


# --- tag names -----------------------------------------------------------------------------

def test_latent_tag_padding() -> None:
    assert names.latent_tag(3, 10) == "lexflow.latent.03"
    assert names.latent_tag(117, 512) == "lexflow.latent.117"
    assert names.latent_certainty_tag(3, 512) == "lexflow.latent.003.certainty"
    assert names.traversal_path(5, 8) == "lexflow/traversals/latent_05.png"
