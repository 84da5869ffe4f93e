"""Faults in the middle of a run (issue 12, defects 3, 4, 10, 12): whatever ends a run (Ctrl-C,
an error, SIGTERM, a model calling sys.exit, every explainer call failing), the version never
reads ``complete`` over it, the exit code says what happened, and ``lexflow.error`` says why.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import register_torch_model, subprocess_env
from helpers import REPO_ROOT, free_port, lexflow_tags
from mllm_servers import MLLMServer

from lexflow import names
from lexflow.cli import cli
from lexflow.config import ExplainConfig
from lexflow.tracking.job import explain
from lexflow.tracking.tags import VersionTags


def _explained(name: str, register_blob: Any) -> str:
    version = register_blob(name)
    explain(f"models:/{name}/{version}", ExplainConfig(rows=2, cache="none"), progress=False)
    assert lexflow_tags(name, version)[names.TAG_STATUS] == names.STATUS_COMPLETE
    return str(version)


# --- 3: never `complete` over a failed run ---------------------------------------------------------

def test_3_interrupt_while_clearing_the_old_tags_never_leaves_complete(
        sqlite_tracking: str, register_blob: Any, no_progress: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    version = _explained("blob-begin", register_blob)
    old = lexflow_tags("blob-begin", version)
    real_delete = VersionTags._delete
    calls = []

    def interrupted(self: Any, keys: list[str]) -> None:
        calls.append(keys)
        if len(calls) > 1:  # the failure handling's own deletes go through
            return real_delete(self, keys)
        real_delete(self, keys[:1])
        raise KeyboardInterrupt  # Ctrl-C while the previous run's tags are being cleared

    monkeypatch.setattr(VersionTags, "_delete", interrupted)
    with pytest.raises(KeyboardInterrupt):
        explain(f"models:/blob-begin/{version}", ExplainConfig(rows=2, cache="none"), progress=False)
    monkeypatch.setattr(VersionTags, "_delete", real_delete)
    tags = lexflow_tags("blob-begin", version)
    assert tags[names.TAG_STATUS] == names.STATUS_FAILED, tags
    assert tags[names.TAG_RUN_ID] != old[names.TAG_RUN_ID]
    assert names.TAG_ERROR in tags
    assert not [k for k in tags if k.startswith(names.TAG_LATENT_PREFIX)]


def test_3_sigterm_ends_like_ctrl_c(sqlite_tracking: str, no_progress: None, tmp_path: Path) -> None:
    from models.hostile_models import SlowBlob

    version = register_torch_model("blob-sigterm", SlowBlob(latent_dim=5))
    env = subprocess_env(sqlite_tracking, LEXFLOW_TEST_DECODE_DELAY="1")
    proc = subprocess.Popen([sys.executable, "-m", "lexflow", "explain",
                             f"models:/blob-sigterm/{version}", "--rows", "2", "--batch-size", "10",
                             "--no-progress"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while lexflow_tags("blob-sigterm", version).get(names.TAG_STATUS) != names.STATUS_RUNNING:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, err[-2000:])
    assert "Traceback" not in err and "SIGTERM" in err
    tags = lexflow_tags("blob-sigterm", version)
    assert tags[names.TAG_STATUS] == names.STATUS_FAILED
    assert "SIGTERM" in tags[names.TAG_ERROR]


# --- 4: every explainer call failing is a failure --------------------------------------------------

@pytest.fixture
def openai_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_progress: None) -> Any:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-faults-0123456789")
    monkeypatch.setenv("LEXFLOW_CACHE_DIR", str(tmp_path / "cache"))
    with MLLMServer("openai", "gpt-4o") as s:
        monkeypatch.setenv("OPENAI_BASE_URL", s.url)
        yield s


def test_4_no_latent_answered_fails_with_the_provider_error(
        openai_server: MLLMServer, sqlite_tracking: str, register_blob: Any) -> None:
    version = register_blob("blob-401")
    openai_server.script["*"] = ["401"] * 100
    res = CliRunner().invoke(cli, ["explain", f"models:/blob-401/{version}", "--explainer",
                                   "openai:/gpt-4o", "--rows", "2", "--samples", "2", "--json",
                                   "--no-progress"])
    assert res.exit_code == 1, res.output
    assert "401" in res.output and "sk-faults" not in res.output
    tags = lexflow_tags("blob-401", version)
    assert tags[names.TAG_STATUS] == names.STATUS_FAILED
    assert "401" in tags[names.TAG_ERROR] and "no latent" in tags[names.TAG_ERROR].lower()


def test_4_some_latents_failing_shows_in_the_exit_code_and_the_registry_table(
        openai_server: MLLMServer, sqlite_tracking: str, register_blob: Any) -> None:
    version = register_blob("blob-some")
    openai_server.script[1] = ["401"] * 10
    args = ["--explainer", "openai:/gpt-4o", "--rows", "2", "--samples", "2", "--no-progress"]
    res = CliRunner().invoke(cli, ["explain", f"models:/blob-some/{version}", *args])
    assert res.exit_code == 3, res.output  # finished, but not every latent got an answer
    assert "partial" in res.output and "1 of 4" in res.output
    assert lexflow_tags("blob-some", version)[names.TAG_STATUS] == names.STATUS_PARTIAL
    table = CliRunner().invoke(cli, ["explain-registry", "--filter", "name = 'blob-some'",
                                     *args[:-1], "--all"])
    assert table.exit_code == 1, table.output
    assert "partial" in table.output and "0 explained, 1 partial" in table.output


# --- 10: explain-registry on a server that is down -------------------------------------------------

def test_10_explain_registry_fails_fast_on_a_down_server(tmp_path: Path) -> None:
    env = subprocess_env(f"http://127.0.0.1:{free_port()}")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "lexflow", "explain-registry"], env=env,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert time.monotonic() - start < 30
    assert proc.returncode == 1, proc.stderr
    assert "Cannot reach the MLflow tracking server" in proc.stderr and "filter" not in proc.stderr
    assert "Traceback" not in proc.stderr


# --- 12: model code never decides the exit code ----------------------------------------------------

def test_12_decoder_calling_sys_exit_fails_the_run(sqlite_tracking: str, no_progress: None) -> None:
    from models.hostile_models import ExitingDecoder

    version = register_torch_model("blob-exit", ExitingDecoder(latent_dim=4))
    res = CliRunner().invoke(cli, ["explain", f"models:/blob-exit/{version}", "--rows", "2",
                                   "--no-progress", "--json"])
    assert res.exit_code == 1, res.output
    assert "sys.exit" in res.output
    tags = lexflow_tags("blob-exit", version)
    assert tags[names.TAG_STATUS] == names.STATUS_FAILED and "sys.exit" in tags[names.TAG_ERROR]
    for flag in ("--dry-run",):
        res = CliRunner().invoke(cli, ["explain", f"models:/blob-exit/{version}", "--rows", "2",
                                       "--no-progress", flag])
        assert res.exit_code == 1 and "sys.exit" in res.output, res.output
    json.dumps(tags)
