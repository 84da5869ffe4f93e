"""Integration tests against a real ``mlflow server`` (started once per session on loopback).

They drive lexflow the ways users do -- ``mlflow run`` on the project, the ``lexflow`` CLI and the
library API -- and read back what it wrote through MlflowClient: model-version tags, the owned
description section, run artifacts and metrics.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from conftest import experiment_runs, lexflow_cli, register_blob_model, subprocess_env
from helpers import (
    REPO_ROOT,
    VENV_BIN,
    Completed,
    free_port,
    lexflow_tags,
    point_tracking_at,
    run_command,
    unique,
)
from mlflow import MlflowClient
from models.blob import BlobDecoder, NoDecode, WrongShape
from PIL import Image

import lexflow
from lexflow import names
from lexflow.config import ExplainConfig
from lexflow.errors import DecodeError, ModelContractError
from lexflow.stages.render import HEADER, PAD

pytestmark = pytest.mark.integration

# The documented fields of one record of explanations.json (README "Outputs"; more may follow).
LATENT_RECORD_FIELDS = {
    "index", "label", "status", "explanation", "explainable", "certainty", "answers", "failures",
    "evidence", "image", "comparison_image", "partner",
}
USER_DESCRIPTION = (
    "Blob VAE trained by the *vision* team.\n\n"
    "| owner | contact |\n|---|---|\n| vision | <vision@example.com> |\n"
    "Do not edit: `lexflow` writes its own section below."
)


def expected_tag_keys(labels: list[str]) -> set[str]:
    keys = {names.TAG_STATUS, names.TAG_RUN_ID, names.TAG_VERSION, names.TAG_EXPLAINER,
            names.TAG_EXPLAINABLE_FRACTION, names.TAG_COVERAGE}
    for label in labels:
        keys |= {f"{names.TAG_LATENT_PREFIX}{label}", f"{names.TAG_LATENT_PREFIX}{label}.certainty"}
    return keys


def assert_certainty_tags(tags: dict[str, str]) -> None:
    certainty = {k: v for k, v in tags.items() if k.endswith(".certainty")}
    assert certainty, tags
    for key, value in certainty.items():
        assert 0.0 <= float(value) <= 1.0, (key, value)


def owned_section(description: str) -> str:
    begin = description.index(names.DESCRIPTION_BEGIN)
    end = description.index(names.DESCRIPTION_END)
    assert begin < end, description
    return description[begin : end + len(names.DESCRIPTION_END)]


def assert_not_touched(name: str, version: str, experiment: str) -> None:
    """An input error found before the run starts: no lexflow tag, no description, no run."""
    assert lexflow_tags(name, version) == {}, lexflow_tags(name, version)
    description = MlflowClient().get_model_version(name, version).description or ""
    assert names.DESCRIPTION_BEGIN not in description, description
    assert experiment_runs(experiment) == [], "a run was started for an input error"


def cli_error(done: Completed) -> str:
    """The 'lexflow: error: ...' message a failed CLI call printed on stderr."""
    match = re.search(r"^lexflow: error: (.*)", done.stderr, re.MULTILINE | re.DOTALL)
    assert match, f"no 'lexflow: error:' line\n{done.describe()}"
    return match.group(1)


def json_document(stdout: str) -> dict[str, Any]:
    """The JSON object ``--json`` printed (the last line of stdout that is one)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            parsed: dict[str, Any] = json.loads(line)
            return parsed
    raise AssertionError(f"no JSON object on stdout:\n{stdout[-3000:]}")


def brightness_centroid_x(tile: np.ndarray) -> float:
    weight = tile.astype(np.float64).sum(axis=-1)
    total = weight.sum()
    assert total > 0, "an empty (black) tile"
    return float((weight.sum(axis=0) * np.arange(tile.shape[1])).sum() / total)


# --- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shared_blob(mlflow_server: Any) -> tuple[str, str]:
    """One 5-latent BlobDecoder version, aliased ``champion``, that no test may ever tag."""
    with pytest.MonkeyPatch.context() as mp, point_tracking_at(mlflow_server.url, mp):
        name = unique("blob-shared")
        version = register_blob_model(name)
        MlflowClient().set_registered_model_alias(name, "champion", version)
    return name, version


# --- 1. mlflow run ----------------------------------------------------------------------------

def test_mlflow_run_explains_a_registered_blob_decoder(
    any_tracking: str, register_blob: Any, tmp_path: Path
) -> None:
    """On both backends (SQLite; PostgreSQL + S3 on moto, artifacts written straight to S3)."""
    tracking = any_tracking
    name = unique("blob-mlrun")
    version = register_blob(name)
    assert version == "1"
    client = MlflowClient()
    client.update_model_version(name, version, description=USER_DESCRIPTION)
    experiment = unique("exp-mlrun")

    done = run_command(
        [str(VENV_BIN / "mlflow"), "run", str(REPO_ROOT), "-P", f"model_uri=models:/{name}/1",
         "-P", "latents=0,1,2,4", "--env-manager", "local", "--experiment-name", experiment],
        subprocess_env(tracking), timeout=300)
    assert done.returncode == 0, done.describe()

    runs = experiment_runs(experiment)
    assert len(runs) == 1, [r.info.run_id for r in runs]
    run = runs[0]
    run_id = run.info.run_id
    assert run.info.status == "FINISHED"
    announced = re.search(r"Run \(ID '([0-9a-f]+)'\) succeeded", done.stderr + done.stdout)
    assert announced and announced.group(1) == run_id, done.describe()

    # --- model-version tags, exactly the names.py contract
    tags = lexflow_tags(name, version)
    assert set(tags) == expected_tag_keys(["00", "01", "02", "04"]), sorted(tags)
    assert tags[names.TAG_STATUS] == names.STATUS_COMPLETE
    assert tags[names.TAG_RUN_ID] == run_id
    assert tags[names.TAG_VERSION] == lexflow.__version__
    assert tags[names.TAG_EXPLAINER] == "measure"
    # 3 explained of all 5 latents (the run measured 4: latents=0,1,2,4)
    assert float(tags[names.TAG_EXPLAINABLE_FRACTION]) == pytest.approx(0.6, abs=1e-3)
    assert "left to right" in tags["lexflow.latent.00"]
    assert "top to bottom" in tags["lexflow.latent.01"]
    assert "larger" in tags["lexflow.latent.02"]
    assert tags["lexflow.latent.04"] == names.NO_CLEAR_EXPLANATION
    assert_certainty_tags(tags)
    assert float(tags["lexflow.latent.04.certainty"]) == 0.0
    assert "lexflow.latent.03" not in tags  # not selected

    # --- description: the user's text verbatim, then one owned section of this run
    description = client.get_model_version(name, version).description
    assert description.startswith(USER_DESCRIPTION), description
    assert description.count(names.DESCRIPTION_BEGIN) == 1
    assert description.count(names.DESCRIPTION_END) == 1
    section = owned_section(description)
    assert run_id in section and "left to right" in section, section

    # --- artifacts
    paths = {f.path for f in client.list_artifacts(run_id, names.ARTIFACT_DIR)}
    assert {names.EXPLANATIONS_FILE, names.REPORT_FILE, names.TRAVERSAL_DIR} <= paths, paths
    local = Path(mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=names.ARTIFACT_DIR, dst_path=str(tmp_path)))
    doc = json.loads((local / "explanations.json").read_text(encoding="utf-8"))
    assert doc["schema"] == names.EXPLANATIONS_SCHEMA
    assert doc["run_id"] == run_id
    assert doc["model"] == {"name": name, "version": "1"}
    assert doc["status"] == names.STATUS_COMPLETE
    assert doc["latent_dim"] == 5
    assert [r["index"] for r in doc["latents"]] == [0, 1, 2, 4]
    for record in doc["latents"]:
        assert set(record) >= LATENT_RECORD_FIELDS, sorted(LATENT_RECORD_FIELDS - set(record))
        assert {"properties", "region"} <= set(record["evidence"]), sorted(record["evidence"])
        assert record["label"] == f"{record['index']:02d}"
        assert record["image"] == f"{names.TRAVERSAL_DIR}/latent_{record['label']}.png"
        assert (local.parent / record["image"]).is_file(), record["image"]
    by_label = {r["label"]: r for r in doc["latents"]}
    assert by_label["04"]["status"] == "inactive" and by_label["04"]["explanation"] is None
    assert by_label["00"]["status"] == "explained" and by_label["00"]["explainable"] is True

    with Image.open(local / "traversals" / "latent_00.png") as im:
        grid = np.asarray(im.convert("RGB"))
    height, width, _ = grid.shape
    rows, steps = 4, 5  # the MLproject defaults
    cell_w, rem_w = divmod(width - PAD, steps)
    cell_h, rem_h = divmod(height - HEADER - PAD, rows)
    assert (rem_w, rem_h) == (0, 0) and cell_w == cell_h, (grid.shape, cell_w, cell_h)
    tile = cell_w - PAD
    assert tile >= 32, tile  # the blob is 32 px, upscaled, never shrunk
    xs = [brightness_centroid_x(grid[HEADER + PAD : HEADER + PAD + tile,
                                     PAD + s * cell_w : PAD + s * cell_w + tile])
          for s in range(steps)]
    assert all(a < b for a, b in zip(xs, xs[1:], strict=False)), xs  # columns go left to right

    report = (local / "report.html").read_text(encoding="utf-8")
    assert report.startswith("<!DOCTYPE html>") and run_id in report
    assert report.count("data:image/png;base64,") >= 4

    # --- metrics
    metrics = client.get_run(run_id).data.metrics
    assert metrics[names.METRIC_EXPLAINABLE_FRACTION] == pytest.approx(0.6)
    assert metrics[names.METRIC_COVERAGE] == pytest.approx(0.8)  # 4 of 5 latents measured
    assert metrics[names.METRIC_LATENTS_EXPLAINED] == 3.0
    assert metrics[names.METRIC_MEAN_CERTAINTY] == pytest.approx(doc["summary"]["mean_certainty"])
    assert 0.0 <= metrics[names.METRIC_MEAN_CERTAINTY] <= 1.0
    assert metrics["certainty.latent_00"] == pytest.approx(by_label["00"]["certainty"])


# --- 2. the CLI -------------------------------------------------------------------------------

def test_cli_explains_a_version_by_alias_as_json(
    tracking: str, register_blob: Any
) -> None:
    name = unique("blob-alias")
    version = register_blob(name)
    MlflowClient().set_registered_model_alias(name, "champion", version)
    experiment = unique("exp-alias")

    done = lexflow_cli("explain", f"models:/{name}@champion", "--latents", "0,1,4", "--json",
                       "--experiment", experiment, tracking_uri=tracking)
    assert done.returncode == 0, done.describe()
    doc = json_document(done.stdout)
    (run,) = experiment_runs(experiment)
    assert doc["run_id"] == run.info.run_id
    assert doc["model_uri"] == f"models:/{name}@champion"
    assert doc["model"] == {"name": name, "version": version}
    assert [r["label"] for r in doc["latents"]] == ["00", "01", "04"]
    assert "left to right" in doc["latents"][0]["explanation"]
    assert "top to bottom" in doc["latents"][1]["explanation"]
    assert doc["latents"][2]["status"] == "inactive"

    tags = lexflow_tags(name, version)
    assert tags[names.TAG_STATUS] == names.STATUS_COMPLETE
    assert tags[names.TAG_RUN_ID] == doc["run_id"]
    assert set(tags) == expected_tag_keys(["00", "01", "04"])
    # a subset run says so (lexflow.coverage) and its fraction is over all 5 latents
    assert tags[names.TAG_COVERAGE].startswith("measured 3/5: 2 explained")
    assert tags[names.TAG_COVERAGE].endswith("; subset latents=0,1,4")
    assert doc["coverage"]["not_measured"] == 2 and tags[names.TAG_EXPLAINABLE_FRACTION] == "0.400"


def test_cli_json_error_is_a_json_document(tracking: str, shared_blob: Any) -> None:
    """With ``--json`` an error is reported as one JSON object on stdout (and text on stderr)."""
    name, version = shared_blob
    done = lexflow_cli("explain", f"models:/{name}/{version}", "--steps", "1", "--json",
                       tracking_uri=tracking)
    assert done.returncode == 2, done.describe()
    error = json.loads(done.stdout)
    assert error["error"] == "ConfigError" and "steps must be an integer >= 2" in error["message"]
    assert "lexflow: error:" in done.stderr


def test_cli_json_stdout_of_a_successful_run_is_only_json(
    tracking: str, register_blob: Any
) -> None:
    name = unique("blob-json")
    register_blob(name)
    done = lexflow_cli("explain", f"models:/{name}/1", "--latents", "0", "--json",
                       tracking_uri=tracking)
    assert done.returncode == 0, done.describe()
    try:
        doc = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        pytest.fail(
            "lexflow BUG: `lexflow explain --json` against an HTTP tracking server prints more "
            f"than the JSON document on stdout ({exc}); MLflow's end_run writes its "
            "'View run' links to sys.stdout. stdout was:\n" + done.stdout[:600])
    assert doc["schema"] == names.EXPLANATIONS_SCHEMA


def test_cli_explains_a_logged_model_id(tracking: str, register_blob: Any) -> None:
    name = unique("blob-mid")
    version = register_blob(name)
    logged = mlflow.last_logged_model()
    assert logged is not None and logged.model_id.startswith("m-")
    uri = f"models:/{logged.model_id}"

    done = lexflow_cli("explain", uri, "--latents", "0,2", "--json", tracking_uri=tracking)
    assert done.returncode == 0, done.describe()
    doc = json_document(done.stdout)
    assert doc["model_uri"] == uri
    assert doc["status"] == names.STATUS_COMPLETE
    assert "left to right" in doc["latents"][0]["explanation"]
    assert "larger" in doc["latents"][1]["explanation"]
    # The logged model is registered as name/version: the resolver is meant to find that version
    # (tracking.ResolvedModel) so the explanation is recorded on it like for models:/name/N.
    assert doc["model"] == {"name": name, "version": version}, (
        "lexflow BUG: models:/m-<id> of a registered model is not attributed to its model "
        "version (tracking._resolve_logged_model matches ModelVersion.model_id, which MLflow "
        f"leaves None; the version's source is {uri!r}), so no version tags are written.")
    tags = lexflow_tags(name, version)
    assert tags[names.TAG_STATUS] == names.STATUS_COMPLETE
    assert tags[names.TAG_RUN_ID] == doc["run_id"]


# --- 3. ONNX and pyfunc decoders through the library API --------------------------------------

def test_library_explains_an_onnx_decoder(
    tracking: str, register_onnx: Any, no_progress: None
) -> None:
    name = unique("onnx")
    version = register_onnx(name, latent_dim=4)
    experiment = unique("exp-onnx")
    result = lexflow.explain(f"models:/{name}/{version}", ExplainConfig(), progress=False,
                             experiment=experiment)
    (run,) = experiment_runs(experiment)
    assert result.run_id == run.info.run_id and run.info.status == "FINISHED"
    assert (result.model_name, result.model_version, result.latent_dim) == (name, version, 4)
    assert result.status == names.STATUS_COMPLETE

    tags = lexflow_tags(name, version)
    assert set(tags) == expected_tag_keys(["00", "01", "02", "03"]), sorted(tags)
    assert tags[names.TAG_STATUS] == names.STATUS_COMPLETE
    assert tags[names.TAG_RUN_ID] == result.run_id
    assert "left to right" in tags["lexflow.latent.00"]
    assert "larger" in tags["lexflow.latent.01"]
    assert tags["lexflow.latent.02"] == tags["lexflow.latent.03"] == names.NO_CLEAR_EXPLANATION
    assert float(tags[names.TAG_EXPLAINABLE_FRACTION]) == pytest.approx(0.5, abs=1e-3)
    assert_certainty_tags(tags)
    artifacts = {f.path for f in MlflowClient().list_artifacts(result.run_id, names.TRAVERSAL_DIR)}
    assert f"{names.TRAVERSAL_DIR}/latent_00.png" in artifacts, artifacts


def test_library_explains_a_pyfunc_decoder(
    tracking: str, register_pyfunc: Any, no_progress: None
) -> None:
    name = unique("pyfunc")
    version = register_pyfunc(name, latent_dim=4)
    experiment = unique("exp-pyfunc")
    result = lexflow.explain(f"models:/{name}/{version}", ExplainConfig(latents=(0, 1, 2, 3)),
                             progress=False, experiment=experiment)
    (run,) = experiment_runs(experiment)
    assert result.run_id == run.info.run_id
    assert result.latent_dim == 4  # from metadata={"lexflow": {"latent_dim": 4}}

    tags = lexflow_tags(name, version)
    assert set(tags) == expected_tag_keys(["00", "01", "02", "03"]), sorted(tags)
    assert tags[names.TAG_STATUS] == names.STATUS_COMPLETE
    assert tags[names.TAG_RUN_ID] == result.run_id
    assert "left to right" in tags["lexflow.latent.00"]
    assert "top to bottom" in tags["lexflow.latent.01"]
    assert "larger" in tags["lexflow.latent.02"]
    assert "colour" in tags["lexflow.latent.03"]
    assert float(tags[names.TAG_EXPLAINABLE_FRACTION]) == pytest.approx(1.0)
    assert_certainty_tags(tags)


def test_library_rejects_a_pyfunc_without_latent_dim(
    tracking: str, register_pyfunc: Any, no_progress: None
) -> None:
    name = unique("pyfunc-nodim")
    version = register_pyfunc(name, latent_dim=4, with_latent_dim=False)
    experiment = unique("exp-pyfunc-nodim")
    with pytest.raises(ModelContractError, match="how many latents") as err:
        lexflow.explain(f"models:/{name}/{version}", progress=False, experiment=experiment)
    assert "latent_dim" in str(err.value)
    assert_not_touched(name, version, experiment)


# --- 4. bad input -----------------------------------------------------------------------------

def _typo(name: str) -> str:
    return name[:-1] + ("x" if name[-1] != "x" else "y")


# (id, model URI from (name, version), extra CLI args, fragments the message must contain)
PRE_RUN_ERRORS = [
    ("unknown-name", lambda n, v: f"models:/{_typo(n)}/{v}", [],
     lambda n, v: ["No registered model named", repr(_typo(n)), "Registered models:",
                   f"Did you mean {n!r}?"]),
    ("unknown-version", lambda n, v: f"models:/{n}/7", [],
     lambda n, v: [f"{n!r} has no version 7", f"Versions: {v}."]),
    ("unknown-alias", lambda n, v: f"models:/{n}@champ", [],
     lambda n, v: ["no alias 'champ'", "Aliases: champion", "Did you mean 'champion'?"]),
    ("runs-uri", lambda n, v: "runs:/abc/x", [],
     lambda n, v: ["'runs:/abc/x' is not a model URI", "models:/<name>/<version>"]),
    ("file-name", lambda n, v: "foo.txt", [],
     lambda n, v: ["'foo.txt' is not a model URI"]),
    ("steps-1", lambda n, v: f"models:/{n}/{v}", ["--steps", "1"],
     lambda n, v: ["steps must be an integer >= 2", "got 1"]),
    ("latents-99", lambda n, v: f"models:/{n}/{v}", ["--latents", "99"],
     lambda n, v: ["latents [99] out of range", "5 latents"]),
]


@pytest.mark.parametrize(("uri", "args", "fragments"),
                         [pytest.param(*case[1:], id=case[0]) for case in PRE_RUN_ERRORS])
def test_cli_rejects_bad_input_before_any_write(
    tracking: str, shared_blob: tuple[str, str], uri: Any, args: list[str], fragments: Any
) -> None:
    name, version = shared_blob
    experiment = unique("exp-bad")
    done = lexflow_cli("explain", uri(name, version), *args, "--experiment", experiment,
                       tracking_uri=tracking)
    assert done.returncode == 2, done.describe()
    message = cli_error(done)
    for fragment in fragments(name, version):
        assert fragment in message, (fragment, message)
    assert "Traceback" not in done.stderr, done.describe()
    assert_not_touched(name, version, experiment)


def _no_latent_dim() -> BlobDecoder:
    model = BlobDecoder(5)
    model.latent_dim = None  # type: ignore[assignment]
    return model


@pytest.mark.parametrize(("make", "fragments"), [
    pytest.param(NoDecode, ["has no decode(z) method"], id="no-decode"),
    pytest.param(_no_latent_dim, ["needs an integer attribute latent_dim", "got None"],
                 id="no-latent-dim"),
])
def test_cli_rejects_a_model_that_breaks_the_contract_before_the_run(
    tracking: str, register_torch: Any, make: Any, fragments: list[str]
) -> None:
    name = unique("bad-contract")
    version = register_torch(name, make())
    experiment = unique("exp-contract")
    done = lexflow_cli("explain", f"models:/{name}/{version}", "--experiment", experiment,
                       tracking_uri=tracking)
    assert done.returncode == 2, done.describe()
    message = cli_error(done)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert_not_touched(name, version, experiment)


def assert_failed_cleanly(name: str, version: str, experiment: str) -> dict[str, str]:
    """A failure after the run started: status failed, run_id of that run, no partial tags."""
    (run,) = experiment_runs(experiment)
    assert run.info.status == "FAILED"
    tags = lexflow_tags(name, version)
    assert tags[names.TAG_STATUS] == names.STATUS_FAILED, tags
    assert tags[names.TAG_RUN_ID] == run.info.run_id
    assert tags.get(names.TAG_ERROR), tags
    assert not [k for k in tags if k.startswith(names.TAG_LATENT_PREFIX)], tags
    assert names.TAG_EXPLAINABLE_FRACTION not in tags
    description = MlflowClient().get_model_version(name, version).description or ""
    assert "explanation failed" in owned_section(description)
    return tags


def test_cli_wrong_shape_decoder_fails_with_a_contract_error(
    tracking: str, register_torch: Any
) -> None:
    name = unique("wrong-shape")
    version = register_torch(name, WrongShape(5))
    experiment = unique("exp-shape")
    done = lexflow_cli("explain", f"models:/{name}/{version}", "--experiment", experiment,
                       tracking_uri=tracking)
    assert done.returncode == 2, done.describe()
    message = cli_error(done)
    assert "returned 32 channels" in message and "[N, C, H, W]" in message, message
    tags = assert_failed_cleanly(name, version, experiment)
    assert "ModelContractError" in tags[names.TAG_ERROR]


def test_cli_nan_decoder_fails_with_a_decode_error(tracking: str, register_blob: Any) -> None:
    name = unique("nan")
    version = register_blob(name, nan_above=2.0)  # default span 3 reaches |z| = 3
    experiment = unique("exp-nan")
    done = lexflow_cli("explain", f"models:/{name}/{version}", "--experiment", experiment,
                       tracking_uri=tracking)
    assert done.returncode == 1, done.describe()
    message = cli_error(done)
    assert "NaN or Inf" in message and "smaller span" in message, message
    tags = assert_failed_cleanly(name, version, experiment)
    assert tags[names.TAG_ERROR].startswith("DecodeError:"), tags[names.TAG_ERROR]


def test_mlflow_run_of_a_nan_decoder_fails_and_tags_that_run(
    tracking: str, register_blob: Any
) -> None:
    name = unique("nan-mlrun")
    version = register_blob(name, nan_above=2.0)
    experiment = unique("exp-nan-mlrun")
    done = run_command(
        [str(VENV_BIN / "mlflow"), "run", str(REPO_ROOT), "-P", f"model_uri=models:/{name}/1",
         "-P", "latents=0,1", "--env-manager", "local", "--experiment-name", experiment],
        subprocess_env(tracking), timeout=300)
    assert done.returncode != 0, done.describe()
    assert "lexflow: error: decode() returned NaN or Inf" in done.stderr, done.describe()
    tags = assert_failed_cleanly(name, version, experiment)  # the run mlflow run created
    assert tags[names.TAG_ERROR].startswith("DecodeError:")


def test_cli_unreachable_tracking_server_fails_fast(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    done = lexflow_cli("explain", "models:/anything/1", tracking_uri=uri, timeout=60)
    elapsed = time.monotonic() - start
    assert elapsed < 20, f"took {elapsed:.1f} s\n{done.describe()}"
    assert done.returncode == 1, done.describe()
    message = cli_error(done)
    assert f"Cannot reach the MLflow tracking server at {uri}" in message, message
    assert "MLFLOW_TRACKING_URI" in message


# --- 5. a failed run never mixes with an earlier complete run's tags ----------------------------

def test_failed_rerun_replaces_the_tags_of_a_complete_run(
    tracking: str, register_blob: Any, no_progress: None
) -> None:
    name = unique("nan-rerun")
    version = register_blob(name, nan_above=2.0)
    uri = f"models:/{name}/{version}"
    experiment = unique("exp-rerun")
    # seed 1: every base code has |z| < 2, so span=2 never reaches the NaN region and span=3 does
    within, beyond = ExplainConfig(span=2.0, seed=1), ExplainConfig(span=3.0, seed=1)

    first = lexflow.explain(uri, within, progress=False, experiment=experiment)
    tags = lexflow_tags(name, version)
    assert tags[names.TAG_STATUS] == names.STATUS_COMPLETE
    assert tags[names.TAG_RUN_ID] == first.run_id
    assert "left to right" in tags["lexflow.latent.00"]

    with pytest.raises(DecodeError, match="NaN or Inf"):
        lexflow.explain(uri, beyond, progress=False, experiment=experiment)
    runs = experiment_runs(experiment)
    assert [r.info.status for r in runs] == ["FINISHED", "FAILED"]
    second_id = runs[1].info.run_id
    tags = lexflow_tags(name, version)
    assert tags[names.TAG_STATUS] == names.STATUS_FAILED
    assert tags[names.TAG_RUN_ID] == second_id != first.run_id
    assert tags[names.TAG_ERROR].startswith("DecodeError:")
    assert not [k for k in tags if k.startswith(names.TAG_LATENT_PREFIX)], sorted(tags)
    assert names.TAG_EXPLAINABLE_FRACTION not in tags
    assert names.TAG_VERSION not in tags  # only the first run wrote it; begin() cleared it
    description = MlflowClient().get_model_version(name, version).description
    assert first.run_id not in description and second_id in description

    third = lexflow.explain(uri, within, progress=False, experiment=experiment)
    assert third.run_id not in (first.run_id, second_id)
    tags = lexflow_tags(name, version)
    assert tags[names.TAG_STATUS] == names.STATUS_COMPLETE
    assert tags[names.TAG_RUN_ID] == third.run_id
    assert names.TAG_ERROR not in tags
    assert set(tags) == expected_tag_keys(["00", "01", "02", "03", "04"]), sorted(tags)
    assert "left to right" in tags["lexflow.latent.00"]
    assert third.run_id in owned_section(MlflowClient().get_model_version(name, version).description)
