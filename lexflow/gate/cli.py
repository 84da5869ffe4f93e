"""``lexflow gate MODEL_URI --policy policy.yaml``: the click layer over :func:`lexflow.gate.gate`.

Exit codes: 0 the gate passed, 1 it failed (every failed check is printed), 2 bad input (policy,
URI, a version never explained, a stale or foreign explanation).
"""

from __future__ import annotations

import json
import sys

import click

from lexflow.errors import LexflowError
from lexflow.gate.checks import GateResult


def _print(result: GateResult, *, promoted: str | None) -> None:
    click.echo(f"{result.model_uri}  run {result.run_id}  policy {result.policy_source}")
    for c in result.checks:
        mark = {"pass": "ok  ", "fail": "FAIL", "warn": "warn"}[c.outcome]
        click.echo(f"  {mark}  {c.message}")
    if result.failures:
        click.echo(f"\nGate failed: {len(result.failures)} check(s) failed:", err=True)
        for c in result.failures:
            click.echo(f"  - {c.message}", err=True)
    else:
        moved = f" Alias {promoted!r} now points at this version." if promoted else ""
        click.echo("\nGate passed." + moved)


@click.command("gate")
@click.argument("model_uri")
@click.option("--policy", "policy_path", required=True, type=click.Path(dir_okay=False),
              help="Policy YAML (see docs/gate.md).")
@click.option("--promote", "alias", default=None, metavar="ALIAS",
              help="Set this alias on the version when the gate passes (implies --record).")
@click.option("--record/--no-record", default=False, show_default=True,
              help="Write the verdict as lexflow.gate.* version tags.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def command(model_uri: str, policy_path: str, alias: str | None, record: bool, as_json: bool) -> None:
    """May MODEL_URI be promoted? Checks its lexflow explanation against a policy."""
    from lexflow.gate import gate, load_policy
    from lexflow.signals import Terminated

    try:
        if alias is not None and not alias.strip():
            from lexflow.gate.errors import GateInputError

            raise GateInputError("--promote needs an alias name, e.g. --promote champion.")
        if alias is not None:
            from lexflow.gate.registry import check_alias

            check_alias(alias.strip())
        policy = load_policy(policy_path)
        result = gate(model_uri, policy, promote=alias, record=record)
    except Terminated as exc:
        message = (f"{exc} after the verdict was recorded whole; run the gate again for its exit "
                   "code.")
        if as_json:  # a CI step that parses the output gets an answer, not an empty string
            click.echo(json.dumps({"error": "Terminated", "message": message}))
        click.echo(f"lexflow gate: error: {message}", err=True)
        sys.exit(exc.exit_code)
    except LexflowError as exc:
        if as_json:
            click.echo(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        click.echo(f"lexflow gate: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    d = result.to_dict()
    promoted = alias if (alias and result.passed) else None
    d["promoted_alias"] = promoted
    if as_json:
        click.echo(json.dumps(d, indent=1))
    else:
        _print(result, promoted=promoted)
    sys.exit(0 if result.passed else 1)
