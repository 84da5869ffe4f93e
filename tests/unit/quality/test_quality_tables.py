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
