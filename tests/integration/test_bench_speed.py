"""The speed benchmarks of issue 14 run and check what they claim: the measure-stage comparison,
decode overlapped with the explainer (its answers equal the explainer's alone, else it exits 1),
and the CPU smoke path of the GPU diffusion benchmark (no GPU is needed for that path)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]


def bench(*args: str, timeout: float = 300) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**__import__("os").environ,
                                                "LEXFLOW_NO_PROGRESS": "1",
                                                "OPENAI_API_KEY": "sk-test-not-a-key"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.parametrize("untrained", [False, True])
def test_measure_stage_prints_the_three_paths_the_ratio_and_the_breakdown(untrained: bool) -> None:
    pytest.importorskip("matplotlib")
    out = bench("benchmarks/measure_stage.py", "--latents", "3", "--repeats", "1",
                *(["--untrained"] if untrained else ["--train-epochs", "1"]))
    for line in ("the seed's way", "lexflow's measure stage", "the raw decoder forward",
                 "faster", "PNG encoding", "evidence", "grid composition", "| decode |",
                 "pictures (strip, animation)", "the encoder's read-back", "for 60 frames",
                 "100x the seed's way would be", "drawn inline",
                 "only what the seed's way makes", "vs only its own output",
                 "the grids' deflate", "Python's zlib at level 1",
                 "of the evidence, the scene analysis", "less the scene analysis and the pictures"):
        assert line in out, out
    kind = "untrained" if untrained else "trained on dSprites-like shapes"
    assert f"MLP VAE ({kind}), 3 latents x 4 rows x 5 steps" in out


def test_overlap_benchmark_answers_match_the_explainer_alone() -> None:
    out = bench("benchmarks/overlap.py", "--latents", "4", "--samples", "1", "--repeats", "1")
    assert "answers the same as the explainer alone: yes" in out, out
    assert "whole run / slower stage alone" in out and "one answer at a time" in out


def test_gpu_diffusion_cpu_smoke_path() -> None:
    pytest.importorskip("diffusers")
    out = bench("benchmarks/gpu_diffusion.py", "--cpu-smoke")
    doc = json.loads(out[out.index("{"):])
    assert any("guidance_traversal_seconds" in k for k in doc), doc


def test_transformers_batch_benchmark_compares_batched_with_one_at_a_time() -> None:
    pytest.importorskip("transformers")
    out = bench("benchmarks/transformers_batch.py", "--latents", "3", "--samples", "1",
                "--batch-size", "3", "--repeats", "1")
    assert "| one at a time |" in out and "| batched (3 prompts a call) |" in out, out


def test_registry_scale_benchmark_runs_explain_registry_and_top_k() -> None:
    out = bench("benchmarks/registry_scale.py", "--versions", "2", "--parallel", "2",
                "--dim", "16", timeout=400)
    assert "| 2 |" in out and "versions per minute" in out, out
    assert "| all |" in out and "| 2 |" in out.split("top-k on", 1)[1], out
