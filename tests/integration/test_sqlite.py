"""The library path end to end against a throwaway SQLite store (fast; no server, no subprocess):
tags, artifacts, the description section, latent label padding and the decoder's pixel range."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pytest
from conftest import experiment_runs
from helpers import lexflow_tags, unique
from mlflow import MlflowClient

import lexflow
from lexflow import names
from lexflow.config import ExplainConfig
from lexflow.errors import ModelContractError

pytestmark = pytest.mark.usefixtures("sqlite_tracking", "no_progress")


def explain(uri: str, experiment: str | None = None, **config: Any) -> Any:
    return lexflow.explain(uri, ExplainConfig(**config), progress=False,
                           experiment=experiment or unique("exp"))


def explanations_json(run_id: str, tmp_path: Path) -> dict[str, Any]:
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=names.EXPLANATIONS_FILE, dst_path=str(tmp_path / run_id))
    doc: dict[str, Any] = json.loads(Path(local).read_text(encoding="utf-8"))
    return doc


def test_complete_run_writes_tags_artifacts_and_metrics(register_blob: Any, tmp_path: Path) -> None:
    version = register_blob("blob")
    experiment = unique("exp")
    result = explain(f"models:/blob/{version}", experiment)
    (run,) = experiment_runs(experiment)
    assert run.info.run_id == result.run_id and run.info.status == "FINISHED"

    tags = lexflow_tags("blob", version)
    assert tags[names.TAG_STATUS] == names.STATUS_COMPLETE
    assert tags[names.TAG_RUN_ID] == result.run_id
    assert tags[names.TAG_VERSION] == lexflow.__version__
    assert tags[names.TAG_EXPLAINER] == "measure"
    assert tags[names.TAG_EXPLAINABLE_FRACTION] == "0.800"  # 4 of 5: latent 4 is inactive
    assert "left to right" in tags["lexflow.latent.00"]
    assert "top to bottom" in tags["lexflow.latent.01"]
    assert "larger" in tags["lexflow.latent.02"]
    assert "colour" in tags["lexflow.latent.03"]
    assert tags["lexflow.latent.04"] == names.NO_CLEAR_EXPLANATION
    assert names.TAG_ERROR not in tags

    client = MlflowClient()
    paths = {f.path for f in client.list_artifacts(result.run_id, names.TRAVERSAL_DIR)}
    assert {names.traversal_path(i, 5) for i in range(5)} <= paths, paths
    doc = explanations_json(result.run_id, tmp_path)
    assert doc["schema"] == names.EXPLANATIONS_SCHEMA
    assert [r["label"] for r in doc["latents"]] == ["00", "01", "02", "03", "04"]
    metrics = client.get_run(result.run_id).data.metrics
    assert metrics[names.METRIC_EXPLAINABLE_FRACTION] == pytest.approx(0.8)
    assert metrics[names.METRIC_MEAN_CERTAINTY] == pytest.approx(result.mean_certainty)
    assert metrics[names.METRIC_ACTIVE_LATENTS] == 4


def test_second_run_replaces_the_owned_description_section(register_blob: Any) -> None:
    version = register_blob("blob")
    client = MlflowClient()
    before = "Owned by *vision*.\n\n| a | b |\n|---|---|\n| 1 | 2 |"
    client.update_model_version("blob", version, description=before)

    first = explain(f"models:/blob/{version}", latents=(0,))
    description = client.get_model_version("blob", version).description
    assert description.startswith(before)
    assert first.run_id in description

    # the user edits around the owned section between the runs
    after = "\n\nChangelog: retrained 2026-11-01 <b>not html</b>"
    client.update_model_version("blob", version, description=description + after)
    second = explain(f"models:/blob/{version}", latents=(0, 1))

    description = client.get_model_version("blob", version).description
    assert description.count(names.DESCRIPTION_BEGIN) == 1, description
    assert description.count(names.DESCRIPTION_END) == 1, description
    assert description.startswith(before), description
    assert description.endswith(after), description
    begin = description.index(names.DESCRIPTION_BEGIN)
    end = description.index(names.DESCRIPTION_END) + len(names.DESCRIPTION_END)
    section = description[begin:end]
    assert second.run_id in section and first.run_id not in description
    assert "top to bottom" in section  # latent 01 was explained only by the second run
    assert description[:begin].rstrip("\n") == before
    assert description[end:] == after


def test_latent_tags_are_zero_padded_to_two_digits(register_blob: Any) -> None:
    version = register_blob("blob")
    result = explain(f"models:/blob/{version}", latents=(3,))
    tags = lexflow_tags("blob", version)
    assert "colour" in tags["lexflow.latent.03"]
    assert "lexflow.latent.03.certainty" in tags
    assert "lexflow.latent.3" not in tags
    assert result.latents[0].image == "lexflow/traversals/latent_03.png"


def test_latent_labels_of_a_120_latent_model_have_three_digits(
    register_blob: Any, tmp_path: Path
) -> None:
    version = register_blob("wide", latent_dim=120)
    result = explain(f"models:/wide/{version}", latents=(3, 117))
    tags = lexflow_tags("wide", version)
    latent_keys = sorted(k for k in tags if k.startswith(names.TAG_LATENT_PREFIX))
    assert latent_keys == ["lexflow.latent.003", "lexflow.latent.003.certainty",
                           "lexflow.latent.117", "lexflow.latent.117.certainty"]
    assert "colour" in tags["lexflow.latent.003"]
    assert tags["lexflow.latent.117"] == names.NO_CLEAR_EXPLANATION

    client = MlflowClient()
    paths = {f.path for f in client.list_artifacts(result.run_id, names.TRAVERSAL_DIR)}
    assert "lexflow/traversals/latent_117.png" in paths, paths
    assert "certainty.latent_117" in client.get_run(result.run_id).data.metrics
    doc = explanations_json(result.run_id, tmp_path)
    assert [r["label"] for r in doc["latents"]] == ["003", "117"]


def _assert_blob_meanings(tags: dict[str, str]) -> None:
    assert "left to right" in tags["lexflow.latent.00"], tags
    assert "top to bottom" in tags["lexflow.latent.01"], tags
    assert "larger" in tags["lexflow.latent.02"], tags
    assert tags["lexflow.latent.04"] == names.NO_CLEAR_EXPLANATION, tags


def test_minus_one_to_one_output_is_detected_and_normalised(
    register_blob: Any, tmp_path: Path
) -> None:
    version = register_blob("signed", out_range="-11")
    result = explain(f"models:/signed/{version}")
    assert result.output_range == (-1.0, 1.0)
    assert explanations_json(result.run_id, tmp_path)["output_range"] == [-1.0, 1.0]
    assert result.status == names.STATUS_COMPLETE
    _assert_blob_meanings(lexflow_tags("signed", version))


def test_metadata_output_range_is_honoured(register_blob: Any) -> None:
    # The decoder's pixels are in [0, 1] (detection would say so) but the metadata says [-1, 1]:
    # lexflow must use what the model declares, not what it guesses.
    version = register_blob("declared", metadata={"output_range": [-1, 1]})
    result = explain(f"models:/declared/{version}", latents=(0, 4))
    assert result.output_range == (-1.0, 1.0)

    version = register_blob("declared-signed", out_range="-11", metadata={"output_range": [-1, 1]})
    result = explain(f"models:/declared-signed/{version}")
    assert result.output_range == (-1.0, 1.0)
    _assert_blob_meanings(lexflow_tags("declared-signed", version))


def test_invalid_metadata_output_range_is_rejected_before_the_run(register_blob: Any) -> None:
    version = register_blob("odd-range", metadata={"output_range": [0, 2]})
    experiment = unique("exp")
    with pytest.raises(ModelContractError, match=r"output_range must be \[0, 1\], \[-1, 1\]"):
        explain(f"models:/odd-range/{version}", experiment)
    assert lexflow_tags("odd-range", version) == {}
    assert experiment_runs(experiment) == []
