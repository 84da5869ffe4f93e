"""`lexflow explain-registry` counts a version as done only when its coverage meets the policy's:
a version explained over a subset of its latents is explained again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from helpers import lexflow_tags

from lexflow.registry_scan import is_done


def test_is_done_reads_status_and_coverage() -> None:
    full = {"lexflow.status": "complete",
            "lexflow.coverage": "measured 5/5: 4 explained, 0 unclear, 1 inactive, 0 failed, 0 skipped"}
    top = {"lexflow.status": "complete",
           "lexflow.coverage": "measured 5/5: 1 explained, 0 unclear, 1 inactive, 0 failed, "
                               "3 skipped; subset top_k=1"}
    assert is_done(full) and not is_done(top)
    assert is_done(top, count_skipped=True) and is_done(top, min_coverage=0.4)
    assert not is_done({**full, "lexflow.status": "partial"})
    assert not is_done({"lexflow.status": "complete"})  # explained before coverage was recorded
    assert not is_done({**full, "lexflow.coverage": "everything, trust me"})


def test_a_subset_run_is_explained_again(sqlite_tracking: str, register_blob: Any,
                                         no_progress: None, tmp_path: Path) -> None:
    from lexflow.cli import cli

    name = "registry-coverage"
    version = register_blob(name)  # 5 latents: 4 active, 1 inactive
    runner = CliRunner()
    out = runner.invoke(cli, ["explain", f"models:/{name}/{version}", "--latents", "0",
                              "--rows", "2"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert lexflow_tags(name, version)["lexflow.coverage"].startswith("measured 1/5:")

    lenient = tmp_path / "policy.yaml"
    lenient.write_text("thresholds: {min_coverage: 0.2}\n")
    scan = runner.invoke(cli, ["explain-registry", "--filter", f"name = '{name}'", "--json",
                               "--policy", str(lenient), "--rows", "2"], catch_exceptions=False)
    assert json.loads(scan.stdout.splitlines()[-1])["versions"] == []  # 1 of 5 is enough here

    scan = runner.invoke(cli, ["explain-registry", "--filter", f"name = '{name}'", "--json",
                               "--rows", "2"], catch_exceptions=False)
    assert scan.exit_code == 0, scan.output
    report = json.loads(scan.stdout.splitlines()[-1])
    assert [v["version"] for v in report["versions"]] == [version]
    assert report["versions"][0]["coverage"].startswith("measured 5/5: 4 explained")
    assert lexflow_tags(name, version)["lexflow.coverage"].startswith("measured 5/5:")

    again = runner.invoke(cli, ["explain-registry", "--filter", f"name = '{name}'", "--json"],
                          catch_exceptions=False)
    assert json.loads(again.stdout.splitlines()[-1])["versions"] == []  # now it is done
