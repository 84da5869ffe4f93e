"""``lexflow diff A B``: the click layer over :func:`lexflow.diff.diff`.

Exit codes: 0 the diff was made (whatever it found; the gate judges it), 1 a failure while
running, 2 bad input (a URI that names nothing, a version without a finished explanation, bad
options).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from lexflow.errors import LexflowError


@click.command("diff")
@click.argument("uri_a", metavar="A")
@click.argument("uri_b", metavar="B")
@click.option("--json", "as_json", is_flag=True, help="Print the diff as JSON.")
@click.option("--html", "html_path", default=None, type=click.Path(dir_okay=False),
              help="Also write an HTML page with the matched grids side by side.")
@click.option("--record/--no-record", default=True, show_default=True,
              help="Write lexflow/diff/<A>.json on B's explanation run, lexflow.diff.<A>.* tags "
                   "and a description line on B's version.")
@click.option("--decode/--no-decode", default=True, show_default=True,
              help="Re-decode both models on the same base codes (when latent_dim agrees).")
@click.option("--rows", default=8, show_default=True, type=int,
              help="Base codes for re-decoding (the first is the zero code).")
@click.option("--seed", default=None, type=int, help="Seed of the base codes (default: A's).")
@click.option("--certainty", default="bow", show_default=True,
              help="How explanations are compared: bow, semantic, semantic:<model path>.")
@click.option("--same-threshold", default=0.75, show_default=True, type=float,
              help="Similarity at or above which two explained latents mean the same.")
@click.option("--match-threshold", default=0.35, show_default=True, type=float,
              help="Similarity below which two explained latents are not the same latent.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
def command(uri_a: str, uri_b: str, as_json: bool, html_path: str | None, record: bool,
            decode: bool, rows: int, seed: int | None, certainty: str, same_threshold: float,
            match_threshold: float, device: str) -> None:
    """Which latents of B (the candidate) mean what they meant in A (e.g. the champion)?

    A and B are model URIs with explanations: models:/vae@champion, models:/vae/4,
    models:/m-<id>. Statuses: same meaning, changed meaning, lost, new, still unclear.
    """
    from lexflow.diff import DiffOptions, diff
    from lexflow.diff import registry as reg

    try:
        options = DiffOptions(decode=decode, rows=rows, seed=seed, certainty=certainty,
                              same_threshold=same_threshold, match_threshold=match_threshold,
                              device=device)
        result = diff(uri_a, uri_b, options)
        written = reg.record(result) if record else []
        if html_path:
            from lexflow.diff.report import diff_html

            used_a = {m.a for m in result.matches} | {m.nearest for m in result.of("new")}
            used_b = {m.b for m in result.matches} | {m.nearest for m in result.of("lost")}
            page = diff_html(result, reg.grids(result.a, {i for i in used_a if i is not None}),
                             reg.grids(result.b, {j for j in used_b if j is not None}))
            Path(html_path).write_text(page, encoding="utf-8")
            written.append(f"page {html_path}")
    except LexflowError as exc:
        if as_json:
            click.echo(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        click.echo(f"lexflow diff: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except OSError as exc:
        click.echo(f"lexflow diff: error: cannot write {html_path}: {exc}", err=True)
        sys.exit(2)
    for w in result.warnings:
        click.echo(f"lexflow diff: warning: {w}", err=True)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=1))
    else:
        click.echo(result.table())
    for line in written:
        click.echo(f"wrote {line}", err=True)
