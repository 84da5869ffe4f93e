"""Under CI a missing tool (Chromium, PostgreSQL) fails the tests that need it; locally it skips
with the reason (tests/helpers.py ``unavailable``, used by the browser and backend fixtures)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import unavailable


def test_missing_tool_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Chromium is not installed"):
        unavailable("Chromium is not installed")


def test_missing_tool_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="Chromium is not installed.*CI is set"):
        unavailable("Chromium is not installed")


def test_browser_fixture_fails_under_ci_without_chromium(tmp_path: Path) -> None:
    """The real fixture of tests/integration/test_browser.py, with Chromium pointed elsewhere,
    in a pytest subprocess run under CI=1."""
    tests = Path(__file__).resolve().parents[1]
    probe = tmp_path / "test_probe.py"
    probe.write_text(f"""
import sys
sys.path[:0] = [{str(tests)!r}, {str(tests / "integration")!r}]
import test_browser
from test_browser import browser  # noqa: F401
test_browser.CHROMIUM = "/nonexistent/chromium"

def test_needs_browser(browser):
    pass
""")
    env = {**os.environ, "CI": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(probe)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 error" in done.stdout and "Chromium is not installed" in done.stdout
    assert "CI is set" in done.stdout
