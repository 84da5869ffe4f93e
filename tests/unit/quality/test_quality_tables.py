"""The per-latent view of the quality suite: every latent, its ground truth and its answer."""

from __future__ import annotations


def test_latent_table_lists_every_latent_with_its_truth_and_escapes_the_text() -> None:
    import torch

    from lexflow.demo.vae import BetaTCVAE
    from lexflow.families import get_family
    from lexflow.quality.seeds import SeededRuns, calibrate, latent_table
    from lexflow.quality.suite import rescore, run_family

    torch.manual_seed(0)
    fam = get_family("dsprites")
    runs = {s: run_family(fam, BetaTCVAE(latent_dim=3).eval(), rows=2, eval_n=200, seed=s,
                          variants=("full",), judge=False) for s in (0, 1)}
    hostile = "moves <script>alert(1)</script> | left\nto right"
    runs[1].answers["full"][2] = (hostile, 0.9)
    runs[1].variants = rescore(runs[1], {"full": 0.5})
    table = latent_table(calibrate(SeededRuns("dsprites", "measure", runs)))

    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 6  # 2 seeds x 3 latents
    for seed, run in runs.items():
        for o in run.variants[0].latents:
            row = next(r for r in rows if r.startswith(f"| {seed} | {o.index} |"))
            cells = [c.strip() for c in row.split(" | ")]
            assert cells[2] == f"{o.factor} {o.score:.2f}"
            assert cells[4] == ("yes" if o.clear else "no" if o.active else "no (inactive)")
            assert cells[5] == f"{o.certainty:.2f}"
    row = next(r for r in rows if r.startswith("| 1 | 2 |"))
    assert "<script>" not in table and "&lt;script&gt;" in row
    assert row.count(" | ") == 7  # the pipe in the text is escaped, the row keeps 8 cells
    assert "\\|" in row and "0.90" in row
    assert table.startswith("<details>") and table.rstrip().endswith("</details>")


def test_dominance_is_the_share_of_the_largest_measured_change() -> None:
    from dataclasses import replace

    import numpy as np

    from lexflow.quality.suite import dominance
    from lexflow.stages.evidence import measure_traversal

    # a wall-and-floor scene: only the wall's colour changes, then wall and floor change alike
    frames = np.zeros((2, 5, 3, 32, 32), np.float32)
    for s in range(5):
        frames[:, s, 0, :16] = 0.9 - 0.2 * s  # the wall turns from red to blue
        frames[:, s, 2, :16] = 0.1 + 0.2 * s
        frames[:, s, 1, 16:] = 0.6  # a green floor
    one = measure_traversal(0, frames)
    assert one.changes and dominance(one) > 0.5
    two = frames.copy()
    for s in range(5):
        two[:, s, 0, 16:] = 0.1 + 0.2 * s  # the floor now changes as well
    both = measure_traversal(0, two)
    assert dominance(both) < dominance(one)
    top = max(c.score for c in both.changes)
    assert dominance(both) == top / sum(c.score for c in both.changes)
    assert dominance(replace(one, changes=())) == 0.0


def test_dominance_variant_scales_the_full_certainty() -> None:
    import torch

    from lexflow.demo.vae import BetaTCVAE
    from lexflow.families import get_family
    from lexflow.quality.suite import run_family

    torch.manual_seed(0)
    run = run_family(get_family("dsprites"), BetaTCVAE(latent_dim=3).eval(), rows=2, eval_n=200,
                     variants=("full", "dominance"), judge=False)
    full, dom = run.answers["full"], run.answers["dominance"]
    assert set(full) == set(dom)
    for i in full:
        assert dom[i][0] == full[i][0]
        assert 0.0 <= dom[i][1] <= full[i][1] + 1e-12


def test_no_readback_variant_is_the_agreement_the_full_certainty_scales_down() -> None:
    import torch

    from lexflow.demo.vae import BetaTCVAE
    from lexflow.families import get_family
    from lexflow.quality.suite import run_family

    torch.manual_seed(0)
    model = BetaTCVAE(latent_dim=3).eval()
    run = run_family(get_family("dsprites"), model, rows=2, eval_n=200,
                     variants=("full", "no_readback"), judge=False)
    full, alone = run.answers["full"], run.answers["no_readback"]
    assert set(full) == set(alone) and "read-back" in run.notes["no_readback"]
    for i in full:
        assert alone[i][0] == full[i][0]
        assert 0.0 <= full[i][1] <= alone[i][1] + 1e-12
    # An untrained encoder reads no traversal back perfectly: the read-back lowers some certainty.
    assert any(full[i][1] < alone[i][1] - 1e-6 for i in full if alone[i][1] > 0)
