"""`lexflow diff`: meanings across versions, against a real SQLite-backed MLflow store.

One module-scoped store holds a blob decoder (the champion), a copy with its latents permuted,
a "retrained" copy whose meanings moved, the same decoder explained with other settings and one
with another latent_dim, a version never explained, and an unregistered logged model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import lexflow_cli, register_torch_model
from helpers import REPO_ROOT, point_tracking_at

from lexflow import names
from lexflow.diff import diff
from lexflow.gate import parse_policy

PERM = [3, 0, 4, 1, 2]  # original latent k is the permuted copy's latent PERM[k]
NAME = "diffvae"


# --- against a real store --------------------------------------------------------------------

@dataclass(frozen=True)
class Store:
    uri: str
    root: Path
    versions: dict[str, str]  # role -> version
    runs: dict[str, str]  # role -> explanation run


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, _sqlite_template: Path) -> Iterator[Store]:
    import shutil

    from models.blob import BlobDecoder
    from models.blob_variants import ChangedBlob, PermutedBlob

    from lexflow import explain
    from lexflow.config import ExplainConfig

    root = tmp_path_factory.mktemp("diff-store")
    shutil.copyfile(_sqlite_template, root / "mlflow.db")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("LEXFLOW_NO_PROGRESS", "1")
        with point_tracking_at(f"sqlite:///{root / 'mlflow.db'}", mp) as uri:
            import mlflow

            models = {"champion": BlobDecoder(5), "permuted": PermutedBlob(PERM),
                      "changed": ChangedBlob(), "steps7": BlobDecoder(5), "wide": BlobDecoder(6),
                      "unexplained": BlobDecoder(5)}
            versions, runs = {}, {}
            for role, module in models.items():
                versions[role] = register_torch_model(NAME, module)
                if role == "unexplained":
                    continue
                config = ExplainConfig(rows=3, steps=7 if role == "steps7" else 5)
                result = explain(f"models:/{NAME}/{versions[role]}", config, progress=False)
                assert result.status == "complete"
                runs[role] = result.run_id
            c = mlflow.MlflowClient()
            c.set_registered_model_alias(NAME, "champion", versions["champion"])
            # an unregistered logged model (models:/m-<id>): explanations on its run only
            import mlflow.pytorch

            with mlflow.start_run():
                info = mlflow.pytorch.log_model(
                    PermutedBlob(PERM), name="model", serialization_format="pickle",
                    code_paths=[str(REPO_ROOT / "tests" / "models")], pip_requirements=["torch"])
            logged = f"models:/{info.model_id}"
            runs["logged"] = explain(logged, ExplainConfig(rows=3), progress=False).run_id
            versions["logged"] = logged
            versions["champion_id"] = c.get_model_version(NAME, versions["champion"]).source
            yield Store(uri, root, versions, runs)


@pytest.fixture
def on_store(store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.chdir(store.root)
    monkeypatch.setenv("LEXFLOW_NO_PROGRESS", "1")
    with point_tracking_at(store.uri, monkeypatch):
        yield store


def _uri(store: Store, role: str) -> str:
    return f"models:/{NAME}/{store.versions[role]}"


def _diff_cli(*args: str):  # noqa: ANN202 - click's Result
    from lexflow.cli import cli

    return CliRunner().invoke(cli, ["diff", *args], catch_exceptions=False)


def test_a_version_diffed_against_itself_is_all_same(on_store: Store) -> None:
    result = diff(f"models:/{NAME}@champion", _uri(on_store, "champion"))
    assert result.components == ("behaviour", "evidence", "text")
    assert [(m.a, m.b, m.status) for m in result.matches] == [
        (0, 0, "same"), (1, 1, "same"), (2, 2, "same"), (3, 3, "same"), (4, 4, "unclear")]
    assert all(m.similarity == pytest.approx(1.0) for m in result.matches)
    assert all(m.certainty_a == m.certainty_b for m in result.matches)
    assert result.summary() == "no meaning changed (4 same)" and not result.warnings


def test_a_latent_permutation_is_recovered_exactly(on_store: Store) -> None:
    # the installed console script: real exit code, stdout is the JSON document only
    done = lexflow_cli("diff", f"models:/{NAME}@champion", _uri(on_store, "permuted"), "--json",
                       "--no-record", tracking_uri=on_store.uri, timeout=180)
    assert done.returncode == 0, done.describe()
    doc = json.loads(done.stdout)
    pairs = sorted((m["a"], m["b"]) for m in doc["matches"])
    assert pairs == [(k, PERM[k]) for k in range(5)]
    assert [m["status"] for m in sorted(doc["matches"], key=lambda m: m["a"])] == [
        "same", "same", "same", "same", "unclear"]
    assert all(m["similarity"] > 0.9 for m in doc["matches"])
    assert doc["counts"]["same"] == 4 and doc["similarity"]["components"][0] == "behaviour"


def test_retrained_copy_changed_lost_new_recorded(on_store: Store, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    page = tmp_path / "diff.html"
    out = _diff_cli(f"models:/{NAME}@champion", _uri(on_store, "changed"), "--html", str(page))
    assert out.exit_code == 0, out.output
    assert "since champion: 1 changed, 1 lost, 1 new" in out.output
    assert re.search(r"same meaning \(reversed\)\s+01\s+01", out.output)
    # the artifact on the candidate's explanation run
    c = MlflowClient()
    local = c.download_artifacts(on_store.runs["changed"], names.diff_path("champion"), str(tmp_path))
    doc = json.loads(Path(local).read_text())
    assert doc["schema"] == names.DIFF_SCHEMA and doc["a"]["version"] == on_store.versions["champion"]
    statuses = {(m["a"], m["b"]): m["status"] for m in doc["matches"]}
    assert statuses[(0, 0)] == "same" and statuses[(1, 1)] == "same"
    assert statuses[(2, 2)] == "changed"
    assert statuses[(3, None)] == "lost" and statuses[(None, 4)] == "new"
    lost = next(m for m in doc["matches"] if m["status"] == "lost")
    assert lost["certainty_a"] == pytest.approx(1.0) and lost["explanation_b"] is None
    # the version tags and the description line
    mv = c.get_model_version(NAME, on_store.versions["changed"])
    assert mv.tags["lexflow.diff.champion.lost"] == "1"
    assert mv.tags["lexflow.diff.champion.changed"] == "1"
    assert mv.tags["lexflow.diff.champion.latents"] == "changed: 02; lost: 03; new: B04"
    assert mv.tags["lexflow.diff.champion.run_id"] == on_store.runs["champion"]
    begin = mv.description.index(names.DESCRIPTION_BEGIN)
    end = mv.description.index(names.DESCRIPTION_END)
    assert "since champion: 1 changed, 1 lost, 1 new" in mv.description[begin:end]
    # again: the line is replaced, not repeated
    assert _diff_cli(f"models:/{NAME}@champion", _uri(on_store, "changed")).exit_code == 0
    again = c.get_model_version(NAME, on_store.versions["changed"]).description
    assert again.count("since champion:") == 1
    # the page: both grids of every matched pair, side by side
    html = page.read_text()
    assert "Content-Security-Policy" in html and html.count("data:image/png;base64,") == 10


def test_logged_model_ids_registered_or_not(on_store: Store, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    a, b = on_store.versions["champion_id"], on_store.versions["logged"]
    assert a.startswith("models:/m-") and b.startswith("models:/m-")
    out = _diff_cli(a, b, "--json")
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["a"]["version"] == on_store.versions["champion"] and doc["b"]["version"] is None
    assert sorted((m["a"], m["b"]) for m in doc["matches"]) == [(k, PERM[k]) for k in range(5)]
    # recorded on the logged model's explanation run, named by A's version
    local = MlflowClient().download_artifacts(on_store.runs["logged"], names.diff_path(
        f"v{on_store.versions['champion']}"), str(tmp_path))
    assert json.loads(Path(local).read_text())["counts"]["same"] == 4


def test_different_settings_warn_and_the_diff_goes_on(on_store: Store) -> None:
    out = _diff_cli(f"models:/{NAME}@champion", _uri(on_store, "steps7"), "--no-record")
    assert out.exit_code == 0
    assert "warning: steps differs (A: 5, B: 7)" in out.output
    assert "since champion: no meaning changed (4 same)" in out.output


def test_across_latent_dim(on_store: Store) -> None:
    result = diff(f"models:/{NAME}@champion", _uri(on_store, "wide"))
    assert "behaviour" not in result.components
    assert any("latent_dim differs (A: 5, B: 6)" in w for w in result.warnings)
    assert [(m.a, m.b) for m in result.of("same")] == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert {(m.a, m.b) for m in result.of("unclear")} == {(4, 4), (None, 5)}


def test_bad_input_exits_2_with_what_to_do(on_store: Store) -> None:
    unexplained = _uri(on_store, "unexplained")
    out = _diff_cli(f"models:/{NAME}@champion", unexplained)
    assert out.exit_code == 2
    assert f"Run `lexflow explain {unexplained}` first" in out.output
    assert "Traceback" not in out.output
    out = _diff_cli(f"models:/{NAME}@champoin", unexplained)
    assert out.exit_code == 2
    assert "has no alias 'champoin'. Aliases: champion. Did you mean 'champion'?" in out.output
    out = _diff_cli(f"models:/{NAME}@champion", _uri(on_store, "permuted"), "--same-threshold", "2")
    assert out.exit_code == 2 and "same_threshold must be in [0, 1]" in out.output


def test_the_gate_requires_the_diff_and_names_the_latents(on_store: Store) -> None:
    from lexflow.gate import gate

    policy = parse_policy("diff: {compare_to: champion, max_lost: 0, max_changed: 2}")
    failed = gate(_uri(on_store, "changed"), policy)
    assert [c.name for c in failed.failures] == ["diff.max_lost"]
    assert "1 latent(s) lost since champion" in failed.failures[0].message
    assert "latent(s) 03." in failed.failures[0].message
    assert gate(_uri(on_store, "permuted"), policy).passed
    # no such alias: fails by default, warns when the policy says so (a first promotion)
    missing = parse_policy("diff: {compare_to: gold, max_lost: 0}")
    assert [c.name for c in gate(_uri(on_store, "permuted"), missing).failures] == ["diff.compare_to"]
    warn = parse_policy("diff: {compare_to: gold, max_lost: 0, if_missing: warn}")
    res = gate(_uri(on_store, "permuted"), warn)
    assert res.passed and "Aliases: champion" in res.warnings[0].message


def test_permutation_benchmark_on_the_demo_vae() -> None:
    """benchmarks/diff_permutation.py (in make bench) runs, and recovers each permuted copy."""
    import subprocess
    import sys

    root = REPO_ROOT
    done = subprocess.run([sys.executable, "benchmarks/diff_permutation.py", "--copies", "2",
                           "--rows", "4"], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "copies whose matching is exactly the permutation: 2 of 2" in done.stdout
    assert "direction (reversed or not) right for" in done.stdout
