"""``lexflow plugins``: every installed explainer, adapter and bias with the distribution providing
it; a plugin that fails to load is listed with its error and does not break the command. The
broken plugins live in a real distribution (a dist-info folder) put on sys.path by the test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from lexflow.cli import cli
from lexflow.plugin_list import installed_plugins


@pytest.fixture
def broken_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A distribution ``lexflow-broken`` 1.2 with three entry points: one whose module is
    missing, one whose import raises (with terminal escapes in the message) and one named like a
    built-in."""
    info = tmp_path / "lexflow_broken-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lexflow-broken\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text(
        "[lexflow.explainers]\n"
        "missing = lexflow_broken_missing:Explainer\n"
        "measure = lexflow_broken_raises:Explainer\n"
        "[lexflow.adapters]\n"
        "raises = lexflow_broken_raises:Adapter\n")
    (tmp_path / "lexflow_broken_raises.py").write_text(
        "raise RuntimeError('needs the \\x1b[31mfrobnicator\\x1b[0m SDK')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_lists_builtins_third_party_and_broken_plugins(broken_dist: Path) -> None:
    found = {(p.kind, p.name, p.distribution): p for p in installed_plugins()}
    measure = found[("explainer", "measure", "lexflow")]
    assert measure.builtin and measure.error is None
    terse = found[("explainer", "terse", "lexflow-terse")]  # plugins/lexflow-terse, installed
    assert not terse.builtin and terse.error is None and terse.target == "lexflow_terse:TerseExplainer"
    assert found[("adapter", "pytorch", "lexflow")].error is None
    assert {n for k, n, _ in found if k == "bias"} >= {"disentanglement", "combination", "conditional"}

    missing = found[("explainer", "missing", "lexflow-broken")]
    assert missing.version == "1.2" and missing.error is not None
    assert missing.error.startswith("ModuleNotFoundError") and "lexflow_broken_missing" in missing.error
    raises = found[("adapter", "raises", "lexflow-broken")]
    assert raises.error is not None and raises.error.startswith("RuntimeError: needs the")
    assert "\x1b" not in raises.error
    shadow = found[("explainer", "measure", "lexflow-broken")]
    assert shadow.error is not None and "not used" in shadow.error


def test_command_lists_errors_and_succeeds(broken_dist: Path) -> None:
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "explainers:" and "adapters:" in lines and "biases:" in lines
    terse = next(line for line in lines if line.split()[:1] == ["terse"])
    assert "lexflow-terse 0.1.0" in terse and "built-in" not in terse
    measure = next(line for line in lines if line.split()[:1] == ["measure"])
    assert "lexflow" in measure and "(built-in)" in measure
    i = next(k for k, line in enumerate(lines) if line.split()[:1] == ["missing"])
    assert "lexflow-broken 1.2" in lines[i] and "error: ModuleNotFoundError" in lines[i + 1]
    assert "\x1b" not in result.output
    assert "3 plugin(s) failed to load or are not used" in result.output


def test_json_gives_the_same_list(broken_dist: Path) -> None:
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert [d["name"] for d in doc] == [p.name for p in installed_plugins()]
    by = {(d["kind"], d["name"], d["distribution"]): d for d in doc}
    assert by[("explainer", "terse", "lexflow-terse")]["error"] is None
    assert by[("explainer", "missing", "lexflow-broken")]["error"].startswith("ModuleNotFoundError")
    assert set(doc[0]) == {"kind", "name", "target", "distribution", "version", "builtin", "error"}
