"""Factor identification on the demo model: latent, true factor, explanation, certainty.

    python benchmarks/demo_factors.py
"""

from __future__ import annotations

from lexflow.demo.factors import accuracy, collapsed_abstained, evaluate


def main() -> None:
    rows = evaluate()
    print(f"{'latent':>6}  {'active':>6}  {'true factor':<12} {'|corr|':>6}  {'certainty':>9}  explanation")
    for r in rows:
        if r.active:
            mark = "ok" if r.correct else "MISS"
        else:
            mark = "collapsed: abstained" if r.explanation is None else "collapsed: EXPLAINED"
        print(f"{r.latent:>6}  {str(r.active):>6}  {r.true_factor:<12} {r.factor_score:6.2f}  "
              f"{r.certainty:9.2f}  {r.explanation or 'No clear explanation'}  [{mark}]")
    active = sum(r.active for r in rows)
    print(f"\nmeasure explainer names the tracked factor for {accuracy(rows):.0%} of {active} active latents")
    ok, total = collapsed_abstained(rows)
    print(f"collapsed latents reported 'No clear explanation': {ok} of {total}")


if __name__ == "__main__":
    main()
