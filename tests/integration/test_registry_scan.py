"""``lexflow explain-registry`` (bulk explanation with bounded parallelism) and the options for large
latent spaces (``--top-k``, bounded memory), against the postgres + S3 server of tests/backends.py.
"""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
from backends import Backend, CountingBlob, register_module, run_lexflow
from helpers import lexflow_tags, unique


@pytest.mark.integration
def test_explain_registry_explains_matching_versions_and_reports_each_failure(
        backend: Backend) -> None:
    from lexflow import registry_scan

    prefix = unique("scan")
    good = register_module(f"{prefix}-vae", CountingBlob(latent_dim=5))
    bad = register_module(f"{prefix}-vae", CountingBlob(latent_dim=5))
    bad_model = CountingBlob(latent_dim=5)
    bad_model.nan_above = 2.0  # NaN images for codes beyond 2 prior std: decoding fails
    bad = register_module(f"{prefix}-vae", bad_model)
    other = register_module(f"{prefix}-other", CountingBlob(latent_dim=5))

    done = run_lexflow(["explain-registry", "--filter", f"name LIKE '{prefix}-vae%'",
                        "--parallel", "2", "--json", "--top-k", "2", "--rows", "3"], backend.env())
    assert done.returncode == 1, done.describe()  # one version failed
    report = json.loads(done.stdout.splitlines()[-1])
    by_version = {v["version"]: v for v in report["versions"]}
    assert set(by_version) == {good, str(int(good) + 1), bad}
    assert report["explained"] == 2 and report["failed"] == 1
    failed = by_version[bad]
    assert not failed["ok"] and failed["exit_code"] == 1
    assert "NaN or Inf" in failed["reason"], failed["reason"]
    assert "[1]" in done.stderr and "FAILED" in done.stderr  # progress lines, one per version

    tags = lexflow_tags(f"{prefix}-vae", good)
    assert tags["lexflow.status"] == "complete"
    # --top-k and --rows were passed on: the two most active latents explained, two skipped.
    assert tags["lexflow.top_k"] == "2" and tags["lexflow.skipped_latents"] == "02,03"
    assert "lexflow.latent.02" not in tags
    # over all 5 latents: the 2 skipped ones count as not explainable
    assert tags["lexflow.explainable_fraction"] == "0.400"
    assert tags["lexflow.coverage"] == ("measured 5/5: 2 explained, 0 unclear, 1 inactive, "
                                        "0 failed, 2 skipped; subset top_k=2")
    from mlflow import MlflowClient

    run = MlflowClient().get_run(tags["lexflow.run_id"])
    assert run.data.params["rows"] == "3" and run.data.params["top_k"] == "2"
    assert lexflow_tags(f"{prefix}-vae", bad)["lexflow.status"] == "failed"
    assert lexflow_tags(f"{prefix}-other", other) == {}  # outside the filter: untouched

    # The default selection (min_coverage 1.0, skipped latents not counted) picks them all again:
    # a --top-k run covers 3 of 5 latents. Counting skipped ones, only the failed version is left.
    picked = registry_scan.select_versions(f"name LIKE '{prefix}-vae%'", all_versions=False)
    assert sorted(v["version"] for v in picked) == sorted(by_version)
    lenient = registry_scan.select_versions(f"name LIKE '{prefix}-vae%'", all_versions=False,
                                            count_skipped=True)
    assert [v["version"] for v in lenient] == [bad]
    everything = registry_scan.select_versions(f"name LIKE '{prefix}%'", all_versions=True)
    assert len(everything) == 4


@pytest.mark.integration
def test_explain_registry_rejects_a_bad_filter_with_exit_2(backend: Backend) -> None:
    done = run_lexflow(["explain-registry", "--filter", "name LIKES 'x'"], backend.env(),
                       timeout=120)
    assert done.returncode == 2, done.describe()
    assert "rejected the filter" in done.stderr and "name LIKE 'vae%'" in done.stderr


def test_summary_table_lists_reasons() -> None:
    from lexflow.registry_scan import VersionOutcome, summary_table

    table = summary_table([
        VersionOutcome("vae", "1", "models:/vae/1", True, "complete", 0.5, "r1", 3.0, 0),
        VersionOutcome("vae", "2", "models:/vae/2", False, "failed", None, None, 1.0, 1,
                       "DecodeError: NaN"),
    ])
    assert "models:/vae/1  complete          50%" in table
    assert "reason: DecodeError: NaN" in table
    assert table.endswith("1 explained, 1 failed, of 2.")


def test_top_k_picks_the_most_active_latents_by_total_change() -> None:
    from lexflow import engine
    from lexflow.adapters.pytorch_vae import PyTorchVAEAdapter
    from lexflow.config import ExplainConfig

    config = ExplainConfig(rows=3, steps=5, top_k=2, cache="none")
    measured, _, _ = engine.measure_latents(
        PyTorchVAEAdapter(CountingBlob(latent_dim=6), device="cpu"), config, tuple(range(6)),
        bias="disentanglement", output_range=None, progress=False)
    changes = {i: m.evidence.total_change for i, m in measured.items()}
    chosen = engine.select_top_k(measured, 2)
    assert chosen == set(sorted(changes, key=lambda i: -changes[i])[:2])
    # Comparison rows are decoded only for the chosen latents.
    assert {i for i, m in measured.items() if m.comparison is not None} == chosen
    with pytest.raises(Exception, match="top_k must be an integer >= 1"):
        ExplainConfig(top_k=0)


def test_measuring_many_latents_keeps_no_frames() -> None:
    """Traced peak memory while measuring 128 latents stays at a few decode groups' frames
    (8 latents x 20 frames x 3x32x32 float32 = 2 MB each), far below all frames (31.5 MB)."""
    from lexflow import engine
    from lexflow.adapters.pytorch_vae import PyTorchVAEAdapter
    from lexflow.config import ExplainConfig

    dim, rows, steps, batch = 128, 4, 5, 160
    config = ExplainConfig(rows=rows, steps=steps, batch_size=batch, cache="none")
    decoder = PyTorchVAEAdapter(CountingBlob(latent_dim=dim), device="cpu")
    engine.measure_latents(decoder, config, (0, 1), bias="disentanglement", output_range=None,
                             progress=False)  # warm up: imports and caches are not frames
    frame_bytes = 3 * 32 * 32 * 4
    all_frames = dim * rows * steps * frame_bytes
    group = batch * frame_bytes
    tracemalloc.start()
    try:
        measured, _, _ = engine.measure_latents(decoder, config, tuple(range(dim)),
                                                  bias="disentanglement", output_range=None,
                                                  progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(measured) == dim
    assert peak < 0.3 * all_frames, f"peak {peak / 1e6:.1f} MB vs all frames {all_frames / 1e6:.1f} MB"
    assert peak < 5 * group, f"peak {peak / 1e6:.1f} MB vs one group {group / 1e6:.1f} MB"
    assert all(isinstance(m.grid, bytes) for m in measured.values())
    assert not any(isinstance(v, np.ndarray) for m in measured.values() for v in vars(m).values())
