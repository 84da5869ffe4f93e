"""The one copy of what tests share: paths, free ports, unique names, starting and stopping
processes (by their process group), waiting for a server to answer, starting ``mlflow server``,
pointing this process at a tracking URI, and reading lexflow's tags back.

Every process started through here is stopped by its process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
_REPO_VENV_BIN = REPO_ROOT / ".venv" / "bin"
# the project venv (lexflow, mlflow): .venv/bin, or the running interpreter's bin directory
VENV_BIN = _REPO_VENV_BIN if (_REPO_VENV_BIN / "lexflow").exists() else Path(sys.executable).parent
SERVER_START_TIMEOUT = 90.0

# Environment variables that would point a test (or a subprocess it starts) at another store,
# experiment, run or cloud profile than the one the test chose.
LEAKY_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID",
             "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID", "AWS_PROFILE", "AWS_SESSION_TOKEN")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound once, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique(prefix: str) -> str:
    """A name no other test (or earlier session against the same server) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without LEAKY_ENV, the venv first on PATH, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in LEAKY_ENV}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def stop_process_group(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """SIGTERM the process group of ``proc`` (started with start_new_session=True), wait, then
    SIGKILL what is left (children such as uvicorn workers share the group)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen[Any]:
    """Start ``cmd`` in its own process group, stdout and stderr into ``log``."""
    with open(log, "wb") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd, start_new_session=True)


def wait_http(url: str, proc: subprocess.Popen[Any], log: Path, what: str,
              timeout: float = SERVER_START_TIMEOUT) -> None:
    """Poll ``url`` until it answers below 500; fail the test (with the log's tail) when ``proc``
    exits first or ``timeout`` s pass."""
    import requests

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with code {proc.returncode} before answering {url}. "
                        f"Log tail:\n{log_tail(log)}")
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not answer {url} within {timeout:.0f} s. "
                        f"Log tail:\n{log_tail(log)}")
        time.sleep(0.3)


@dataclass(frozen=True)
class Completed:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        return (f"$ {' '.join(self.args)}\nexit {self.returncode} after {self.seconds:.1f} s\n"
                f"--- stdout (tail) ---\n{self.stdout[-3000:]}\n"
                f"--- stderr (tail) ---\n{self.stderr[-3000:]}")


def start_command(args: list[str], env: dict[str, str], cwd: Path | None = None
                  ) -> subprocess.Popen[str]:
    """Start a command in its own process group, stdout and stderr piped (text)."""
    return subprocess.Popen(args, env=env, cwd=cwd or REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            start_new_session=True)


def run_command(args: list[str], env: dict[str, str], timeout: float, cwd: Path | None = None
                ) -> Completed:
    """Run a command in its own process group; on timeout kill the group and fail the test."""
    return finish(start_command(args, env, cwd), timeout)


def finish(proc: subprocess.Popen[str], timeout: float = 180.0) -> Completed:
    """Wait for a command started by :func:`start_command`; on timeout kill its group and fail."""
    args = [str(a) for a in proc.args] if isinstance(proc.args, list) else [str(proc.args)]
    start = time.monotonic()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process_group(proc, grace=5.0)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(args)} did not finish within {timeout:.0f} s.\n"
                    f"stdout tail:\n{(out or '')[-3000:]}\nstderr tail:\n{(err or '')[-3000:]}")
    return Completed(list(args), proc.returncode, out, err, time.monotonic() - start)


@contextmanager
def mlflow_server(root: Path, store_args: list[str], env: dict[str, str] | None = None,
                  what: str = "mlflow server") -> Iterator[tuple[str, subprocess.Popen[Any], Path]]:
    """A real ``mlflow server`` on loopback (one worker, no job execution) with the given store
    and artifact arguments; yields (url, process, log) and stops it by its process group."""
    port = free_port()
    log = root / "server.log"
    env = dict(env or clean_env())
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    proc = spawn([str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                  *store_args, "--workers", "1"], log, env, cwd=root)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health", proc, log, what)
        yield url, proc, log
    finally:
        stop_process_group(proc)


@contextmanager
def point_tracking_at(uri: str, monkeypatch: pytest.MonkeyPatch,
                      env: dict[str, str] | None = None) -> Iterator[str]:
    """Point this process (environment and mlflow) at ``uri``; put mlflow's tracking URI back and
    end any run a test left active afterwards (monkeypatch restores the environment)."""
    import mlflow
    import mlflow.tracking._tracking_service.utils as tracking_utils

    for key in LEAKY_ENV:
        monkeypatch.delenv(key, raising=False)
    for key, value in {**(env or {}), "MLFLOW_TRACKING_URI": uri}.items():
        monkeypatch.setenv(key, value)
    previous = tracking_utils._tracking_uri
    mlflow.set_tracking_uri(uri)
    try:
        yield uri
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run(status="KILLED")
        mlflow.set_tracking_uri(previous)


def experiment_id(name: str) -> str:
    """The id of experiment ``name`` in the current store, created when missing (tests log into
    explicit experiments: no process-wide active experiment)."""
    from mlflow import MlflowClient

    c = MlflowClient()
    exp = c.get_experiment_by_name(name)
    return str(exp.experiment_id) if exp else str(c.create_experiment(name))


def lexflow_tags(name: str, version: str) -> dict[str, str]:
    """The ``lexflow.*`` tags of a model version."""
    from mlflow import MlflowClient

    tags = MlflowClient().get_model_version(name, version).tags
    return {k: v for k, v in tags.items() if k.startswith("lexflow.")}
