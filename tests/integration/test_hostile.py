"""Hostile provider text, end to end: a loopback OpenAI-compatible server echoes the caller's API
key into its answer text, its ``model`` field, refusals and errors, wrapped in control characters,
terminal escapes, bidi overrides and link bait. After a real ``lexflow explain`` (CLI, in
process) into a throwaway SQLite store, the key and the control characters must be nowhere: not
in the store file, the run's artifacts (explanations, report, checkpoints), the answer cache,
stdout, stderr or the logs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import lexflow_tags
from hostile import CONTROLS, EchoKeyServer, files_text

from lexflow import names
from lexflow.cli import cli
from lexflow.sanitize import clean, redact, strip_controls

LONG_KEY = "sk-hostile-KEY-0123456789"
SHORT_KEY = "k3Y9z"  # under 8 characters: redacted too


@pytest.fixture
def echo_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_progress: None
                ) -> Iterator[EchoKeyServer]:
    monkeypatch.setenv("LEXFLOW_CACHE_DIR", str(tmp_path / "cache"))
    with EchoKeyServer() as s:
        monkeypatch.setenv("OPENAI_BASE_URL", s.url)
        yield s


@pytest.mark.parametrize("key", [LONG_KEY, SHORT_KEY], ids=["long-key", "short-key"])
def test_key_echoed_by_the_server_is_written_nowhere(
        key: str, echo_server: EchoKeyServer, sqlite_tracking: str, register_blob,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd, caplog) -> None:
    for logger in ("lexflow", "openai", "httpx", "mlflow"):
        caplog.set_level(logging.DEBUG, logger=logger)
    monkeypatch.setenv("OPENAI_API_KEY", key)
    version = register_blob("blob-hostile")
    echo_server.script[1] = ["401", "refusal", "ok"]  # errors and refusals echo the key too
    res = CliRunner().invoke(cli, [
        "explain", f"models:/blob-hostile/{version}", "--explainer", "openai:/gpt-4o",
        "--rows", "2", "--samples", "3", "--no-progress", "-o", "backoff=0.01"])
    assert res.exit_code == 0, res.output
    assert len(echo_server.calls) == 12
    assert all({k.lower(): v for k, v in s.headers.items()}["authorization"] == f"Bearer {key}"
               for s in echo_server.calls)

    tags = lexflow_tags("blob-hostile", version)
    assert tags[names.TAG_STATUS] in (names.STATUS_COMPLETE, names.STATUS_PARTIAL)
    assert "***" in tags["lexflow.latent.00"] and "moves" in tags["lexflow.latent.00"]
    out, err = capfd.readouterr()
    logs = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    written = files_text(tmp_path)  # mlflow.db, mlruns/ (artifacts, checkpoints), cache/
    assert list((tmp_path / "cache").rglob("*.json")), "answers were cached (and searched)"
    assert list(tmp_path.rglob("partial/*.json")), "checkpoints were written (and searched)"
    for where, text in (("store, artifacts, cache", written), ("CLI output", res.output),
                        ("stdout", out), ("stderr", err), ("logs", logs)):
        assert key not in text, f"the API key leaked into {where}"
    report = next(tmp_path.rglob("report.html")).read_text()
    doc = json.loads(next(tmp_path.rglob("explanations.json")).read_text())
    artifacts = {str(p.relative_to(tmp_path)): p.read_text() for p in tmp_path.rglob("mlruns/**/*")
                 if p.is_file() and p.suffix in (".json", ".html")}
    shown = {"report": report, "explanations": json.dumps(doc, ensure_ascii=False),
             "output": res.output, "tags": "\n".join(tags.values()), **artifacts}
    for where, text in shown.items():
        found = [ch for ch in CONTROLS if ch in text]
        assert not found, f"control characters {found} reached {where}"


def test_redaction_and_stripping_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    assert redact("a sk-LONGKEY1 b", ["sk-LONGKEY1"]) == "a *** b"
    assert redact("x=abcd; abcdabcd", ["abcd"]) == "x=***; ******"  # 4+ chars: everywhere
    assert redact("x is xylophone", ["x"]) == "*** is xylophone"  # short: whole words only
    # a key split by a zero-width space or a NUL is still found (stripping comes first)
    assert clean("k\u200bey-1234\x00-5678", ["key-1234-5678"]) == "***"
    assert strip_controls("a\rb\u2028c\td\x1b[2J\u202eE") == "a\nb\nc\td[2JE"
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "tok-from-env-123")
    assert clean("leak tok-from-env-123") == "leak ***"


def test_answers_of_any_explainer_are_cleaned(sqlite_tracking: str, register_blob, no_progress,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin explainer (not the MLLM base) returning control characters and a secret from the
    environment: the pipeline cleans every response before it is used."""
    from lexflow import plugins
    from lexflow.config import ExplainConfig
    from lexflow.tracking.job import explain

    monkeypatch.setenv("PLUGIN_API_TOKEN", "plugin-secret-value-42")
    monkeypatch.setitem(plugins.BUILTIN[plugins.EXPLAINER_GROUP], "raw", f"{__name__}:RawExplainer")
    version = register_blob("blob-raw")
    result = explain(f"models:/blob-raw/{version}",
                     ExplainConfig(explainer="raw", rows=2, samples=2, latents=(0,), cache="none"),
                     progress=False)
    text = json.dumps(result.to_dict(), ensure_ascii=False)
    assert "plugin-secret-value-42" not in text
    assert not [c for c in CONTROLS if c in text]
    assert result.latents[0].explanation == "moves *** right evil"


from lexflow.explainers.base import Explainer, ExplainRequest, ExplainResponse  # noqa: E402


class RawExplainer(Explainer):
    """A test double: answers with a NUL, an escape, a bidi override and an environment secret."""

    scheme = "raw"

    def explain(self, request: ExplainRequest) -> ExplainResponse:
        text = "moves plugin-secret-value-42 right\x00\x1b \u202eevil"
        return ExplainResponse(request.index, (text,) * request.samples)
