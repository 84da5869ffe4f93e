"""``lexflow evaluate``: explanations against human references, printed and logged to MLflow."""

from __future__ import annotations

import json

import click

from lexflow.errors import LexflowError


@click.command("evaluate")
@click.argument("run_or_file")
@click.option("--references", "references", required=True, type=click.Path(dir_okay=False),
              help="JSON Lines: {\"latent\": 0, \"references\": [\"...\", ...]} per latent.")
@click.option("--bertscore-model", default=None, type=click.Path(file_okay=False),
              help="Local transformers model directory for BERTScore (never downloaded).")
@click.option("--log/--no-log", default=None,
              help="Log quality.* metrics on the run. Default: yes for a run id, no for a file.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(run_or_file: str, references: str, bertscore_model: str | None, log: bool | None,
            as_json: bool) -> None:
    """Score the explanations of RUN_OR_FILE (a run id or an explanations.json) against references.

    BLEU, ROUGE-L, METEOR (exact + stem) and CIDEr-D always; BERTScore with --bertscore-model.
    CIDEr-D's IDF comes from the whole run: with a single latent it is 0 by construction.
    """
    from lexflow.cli import _fail
    from lexflow.quality.evaluate import evaluate, table

    try:
        result = evaluate(run_or_file, references, bertscore_model=bertscore_model, log=log)
    except LexflowError as exc:
        _fail(exc, as_json)
        return
    click.echo(json.dumps(result.to_dict()) if as_json else table(result))
