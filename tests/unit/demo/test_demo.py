"""The shipped demo model: the measure explainer names the factor each active latent tracks."""

from __future__ import annotations

from lexflow.demo.factors import accuracy, collapsed_abstained, evaluate, named_factors


def test_named_factors_reads_the_measure_vocabulary() -> None:
    assert named_factors("moves the object from right to left and makes the object larger") == ["x", "scale"]
    assert named_factors(None) == []


def test_measure_names_the_tracked_factor_of_at_least_90_percent_of_active_latents() -> None:
    rows = evaluate(n=2000)
    assert sum(r.active for r in rows) >= 5
    assert accuracy(rows) >= 0.9, [(r.latent, r.true_factor, r.explanation) for r in rows if r.active]
    ok, total = collapsed_abstained(rows)
    assert ok == total
