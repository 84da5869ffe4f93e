"""The quality suite with an MLLM explainer, as a user runs it: ``python benchmarks/quality.py
--explainer openai:/gpt-4o`` against a loopback OpenAI server (tests/mllm_servers.py), and the
table's label of what judged (measure: self-consistency; an MLLM: from grids).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import REPO_ROOT

from lexflow.explainers.judging import FROM_GRIDS
from lexflow.quality.judge import SELF_CONSISTENCY

KEY = "sk-test-key-0123456789"


@pytest.fixture
def serve(mllm_servers):
    return mllm_servers


def test_quality_benchmark_judges_an_openai_explainer_and_labels_measure_self_consistency(
        serve, tmp_path) -> None:
    """``python benchmarks/quality.py --explainer openai:/gpt-4o -o judge_temperature=0.25`` against
    a loopback server."""
    server = serve("openai", "gpt-4o")
    server.judge = lambda seen: ('{"grid": 1}' if "Which grid" in seen.text
                                 else '{"direction": "forward"}')
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OPENAI_BASE_URL": server.url,
           "OPENAI_API_KEY": KEY, "LEXFLOW_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "benchmarks/quality.py", "--family", "dsprites", "--seeds", "0",
         "--eval-n", "300", "--explainer", "measure", "--explainer", "openai:/gpt-4o",
         "-o", "judge_temperature=0.25", "--json"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert KEY not in proc.stdout + proc.stderr
    runs = {r["explainer"]: r["seeds"]["0"]["default"] for r in json.loads(proc.stdout)["results"]}
    measure = runs["measure"][0]
    assert measure["judge"] == SELF_CONSISTENCY
    full = next(v for v in runs["openai:/gpt-4o"] if v["variant"] == "full")
    assert full["judge"] == FROM_GRIDS and full["judge_unavailable"] == 0
    assert full["explained"] > 0 and full["judge_asked"] > 0
    # a judge that always picks grid 1 and always says "forward": chance and one half, exactly
    assert full["detection"] == pytest.approx(full["detection_chance"])
    assert (full["direction"], full["direction_coverage"]) == (0.5, 1.0)
    judged = [s for s in server.calls if s.latent is None]
    assert judged and all(s.body.get("response_format") for s in judged)
    # -o judge_temperature=0.25 reached the explainer: every judge question asks at it
    assert {s.body.get("temperature") for s in judged} == {0.25}


def test_markdown_table_labels_what_judged() -> None:
    from lexflow.quality.suite import FamilyRun, VariantResult, markdown_table

    def variant(judge: str, unanswered: int) -> VariantResult:
        return VariantResult("dsprites", "x", "full", (), 1.0, 2, 1.0, 0.5, 0.25, 1.0, 1.0, 2,
                             judge=judge, judge_asked=12, judge_unavailable=unanswered)

    table = markdown_table([FamilyRun("dsprites", "x", [variant(SELF_CONSISTENCY, 0),
                                                        variant(FROM_GRIDS, 3)])])
    rows = table.splitlines()
    assert "| judged |" in rows[0]
    assert "| self-consistency |" in rows[2]
    assert "| from grids (3 of 12 unanswered) |" in rows[3]
