"""CSVAE-like VAEs: attribute directions from labelled data (conditional bias) and groups of
latents moved together (combination bias), registered in a throwaway SQLite store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import register_torch_model  # noqa: E402
from helpers import lexflow_tags  # noqa: E402
from models.csvae import BlobCSVAE  # noqa: E402

import lexflow  # noqa: E402
from lexflow import csvae  # noqa: E402
from lexflow.config import ExplainConfig  # noqa: E402
from lexflow.errors import ConfigError, ModelContractError  # noqa: E402
from lexflow.stages.plan import attribute_plan, group_plan  # noqa: E402


def labelled_blobs(n: int = 200) -> tuple[Any, np.ndarray]:
    """Images decoded from z ~ N(0, I) and the label large = z2 > 0."""
    z = torch.from_numpy(np.random.default_rng(1).standard_normal((n, 5)).astype(np.float32))
    with torch.no_grad():
        images = BlobCSVAE().decode(z)
    return images.numpy(), (z[:, 2] > 0).numpy().astype(int)


def read_explanations(run_id: str) -> dict[str, Any]:
    import mlflow

    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="lexflow/explanations.json")
    return json.loads(Path(path).read_text())


def test_attribute_direction_is_the_difference_of_class_means() -> None:
    codes = np.array([[0, 1, 2], [0, 3, 4], [9, 5, 0], [9, 7, 2]], np.float32)
    labels = np.array([[1, 0], [1, 1], [0, 0], [0, 1]])
    out = csvae.attribute_directions(codes, labels, subspace=[1, 2], names=["a", "b"])
    assert out["a"] == pytest.approx([0, 2 - 6, 3 - 1])  # the latent outside w stays 0
    assert out["b"] == pytest.approx([0, 5 - 3, 3 - 1])
    with pytest.raises(ConfigError, match="both y=1 and y=0"):
        csvae.attribute_directions(codes, np.ones(4), subspace=[1])
    with pytest.raises(ConfigError, match="subspace"):
        csvae.attribute_directions(codes, labels[:, 0], subspace=[7])


def test_labelled_data_gives_a_size_direction() -> None:
    images, large = labelled_blobs()
    w = csvae.encode(BlobCSVAE(), images)
    direction = csvae.attribute_directions(w, large, subspace=BlobCSVAE.label_subspace,
                                           names=["large"])["large"]
    assert direction[2] > 1.0 and abs(direction[3]) < 1e-6 and direction[0] == 0.0


def test_plans_move_groups_and_attributes() -> None:
    config = ExplainConfig(rows=2, steps=3)
    plan = group_plan(5, [[0, 1], [2]], config, ["position", "size"])
    z = plan.codes(0).reshape(2, 3, 5)
    assert np.allclose(z[:, :, 0], [[-3, 0, 3]] * 2) and np.allclose(z[:, :, 1], z[:, :, 0])
    assert np.allclose(z[:, :, 2:], plan.base_codes[:, None, 2:])
    assert plan.items == 2 and plan.members == ((0, 1), (2,))
    attr = attribute_plan(5, {"large": [0, 0, 1.5, 0, 0]}, config)
    z = attr.codes(0).reshape(2, 3, 5)
    assert attr.values == (0.0, 2.0, 4.0)
    assert np.allclose(z[:, :, 2] - attr.base_codes[:, None, 2], [[0, 3, 6]] * 2)
    with pytest.raises(ModelContractError, match="groups"):
        group_plan(5, [[0, 9]], config)
    with pytest.raises(ModelContractError, match="5 finite floats"):
        attribute_plan(5, {"large": [1.0]}, config)


def test_csvae_explained_with_conditional_and_combination_bias(sqlite_tracking: str,
                                                               no_progress: None) -> None:
    images, large = labelled_blobs()
    model = BlobCSVAE()
    meta = csvae.csvae_metadata(
        csvae.attribute_directions(csvae.encode(model, images), large,
                                   subspace=model.label_subspace, names=["large"]),
        groups=[[0, 1], [2]], group_names=["position", "size"], attribute_span=2.0)
    version = register_torch_model("csvae", model, meta)

    result = lexflow.explain(f"models:/csvae/{version}", ExplainConfig(rows=3), progress=False)
    assert result.latent_dim == 1
    (item,) = result.latents
    assert item.kind == "attribute" and item.name == "large" and item.members == (2,)
    assert "large" in (item.condition or "")
    assert item.explanation and "larger" in item.explanation
    doc = read_explanations(result.run_id)
    assert doc["traversal"]["kind"] == "attribute" and doc["traversal"]["values"][0] == 0.0
    assert lexflow_tags("csvae", version)["lexflow.latent.00"] == item.explanation

    combo = lexflow.explain(f"models:/csvae/{version}", ExplainConfig(rows=3, bias="combination"),
                            progress=False)
    assert [r.kind for r in combo.latents] == ["group", "group"]
    assert [r.members for r in combo.latents] == [(0, 1), (2,)]
    assert [r.name for r in combo.latents] == ["position", "size"]
    position, size = combo.latents
    assert position.explanation and "left to right" in position.explanation
    assert "top to bottom" in position.explanation  # both latents of the group moved together
    assert size.explanation and "larger" in size.explanation
    doc = read_explanations(combo.run_id)
    assert doc["traversal"]["members"] == [[0, 1], [2]]
    assert doc["latents"][0]["members"] == [0, 1]
    tags = lexflow_tags("csvae", version)
    assert tags["lexflow.latent.01"] == size.explanation and "lexflow.latent.02" not in tags
