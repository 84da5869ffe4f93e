"""Coverage against a real SQLite store: the runs the issue tried (`--latents 0`, `--top-k 1`)
do not pass the example policy's gate, a run over every latent does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers import REPO_ROOT

# --- a real store: the runs the issue tried ----------------------------------------------------

def test_partial_runs_do_not_pass_the_gate(sqlite_tracking: str, register_blob: Any,
                                           no_progress: None, tmp_path: Path) -> None:
    from click.testing import CliRunner
    from mlflow import MlflowClient

    from lexflow.cli import cli

    name = "coverage-blob"
    version = register_blob(name, latent_dim=8)  # latents 0-3 active, 4-7 inactive
    uri = f"models:/{name}/{version}"
    runner = CliRunner()
    example = str(REPO_ROOT / "docs" / "policy.example.yaml")

    def explain(*args: str) -> dict[str, Any]:
        out = runner.invoke(cli, ["explain", uri, "--rows", "2", *args], catch_exceptions=False)
        assert out.exit_code == 0, out.output
        return dict(MlflowClient().get_model_version(name, version).tags)

    def gate(policy: str = example) -> tuple[int, str]:
        out = runner.invoke(cli, ["gate", uri, "--policy", policy], catch_exceptions=False)
        return out.exit_code, out.output

    explain("--latents", "0")
    code, text = gate()
    assert code == 1 and "Coverage check failed: 1 of 8 latents measured, subset latents=0" in text
    assert "explainable_fraction = 0.125" in text

    explain("--top-k", "1")
    code, text = gate()
    assert code == 1 and "skipped by top_k: 01, 02, 03" in text
    lenient = tmp_path / "lenient.yaml"
    lenient.write_text("thresholds: {count_skipped: true}\n")
    assert gate(str(lenient))[0] == 0

    explain()  # every latent: the same policy passes
    code, text = gate()
    assert code == 0 and "coverage = 1.000 >= 1.0 (8 of 8 latents measured" in text
