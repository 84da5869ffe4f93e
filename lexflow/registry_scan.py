"""``lexflow explain-registry``: explain every model version that matches a filter.

Each version is explained by its own ``python -m lexflow explain`` process: MLflow's fluent run API
keeps the active run in process-global state, so runs cannot share a process safely, and a crash
or a native-library abort in one version cannot take the others down. At most ``parallel``
processes run at once; a failing version is reported with its reason and the rest go on.

By default a version is picked when it has no complete lexflow explanation (``lexflow.status`` is
missing, running, failed or partial); ``--all`` picks every matching version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from typing import Any

import click

from lexflow import names, tracking
from lexflow.errors import LexflowError

EXIT_PARTIAL = 3  # lexflow.cli.EXIT_PARTIAL (not imported: the CLI module is heavier)

# `lexflow explain` options that explain-registry does not pass on (it sets them itself).
_NOT_FORWARDED = ("as_json", "no_progress", "dry_run")


@dataclass(frozen=True)
class VersionOutcome:
    """How one version's explanation went.

    Attributes:
        name, version: the model version; uri: ``models:/name/version``.
        ok: the explain process exited 0 with a complete explanation.
        status: the lexflow status it ended with (complete, partial) or ``failed``.
        explainable_fraction: of the result, or None when it failed.
        run_id: the MLflow run, when one was written.
        seconds: wall time of the explain process.
        exit_code: of the explain process (2: bad input, 1: failure while running, 3: partial).
        reason: why it failed ("" when ok).
    """

    name: str
    version: str
    uri: str
    ok: bool
    status: str
    explainable_fraction: float | None
    run_id: str | None
    seconds: float
    exit_code: int
    reason: str = ""


def select_versions(filter_string: str | None, *, all_versions: bool) -> list[dict[str, Any]]:
    """Versions matching ``filter_string``; without ``all_versions`` only those not complete."""
    versions = tracking.search_versions(filter_string)
    if all_versions:
        return versions
    return [v for v in versions if v["tags"].get(names.TAG_STATUS) != names.STATUS_COMPLETE]


def _reason(stdout: str, stderr: str, code: int) -> str:
    for line in reversed(stdout.strip().splitlines()):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and "message" in doc:
            return f"{doc.get('error', 'error')}: {doc['message']}"
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("lexflow: error:")]
    if errors:
        return errors[-1].removeprefix("lexflow: error:").strip()
    return lines[-1].strip() if lines else f"exit code {code} and no message"


def _partial_reason(doc: dict[str, Any]) -> str:
    asked = [r for r in doc.get("latents", []) if r.get("status") != "inactive"]
    failed = [r for r in asked if r.get("status") == "failed"]
    first = next((f for r in failed for f in r.get("failures", [])), "")
    return (f"{len(failed)} of {len(asked)} latents got no answer"
            + (f" (e.g. {first[:200]})" if first else ""))


def explain_version(name: str, version: str, args: Sequence[str]) -> VersionOutcome:
    """Run ``python -m lexflow explain models:/name/version --json <args>`` and read its result."""
    uri = f"models:/{name}/{version}"
    env = {k: v for k, v in os.environ.items() if k != names.ENV_RUN_ID}  # never share a run
    env[names.ENV_NO_PROGRESS] = "1"
    cmd = [sys.executable, "-m", "lexflow", "explain", uri, "--json", "--no-progress", *args]
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          check=False)
    seconds = time.monotonic() - start
    if proc.returncode in (0, EXIT_PARTIAL):
        try:
            doc = json.loads(proc.stdout.strip().splitlines()[-1])
            ok = proc.returncode == 0 and doc["status"] == names.STATUS_COMPLETE
            return VersionOutcome(name, version, uri, ok, str(doc["status"]),
                                  float(doc["summary"]["explainable_fraction"]),
                                  str(doc["run_id"]), seconds, proc.returncode,
                                  "" if ok else _partial_reason(doc))
        except (ValueError, KeyError, IndexError, TypeError):
            return VersionOutcome(name, version, uri, False, names.STATUS_FAILED, None, None,
                                  seconds, proc.returncode or 1,
                                  f"explain exited {proc.returncode} but printed no JSON result")
    return VersionOutcome(name, version, uri, False, names.STATUS_FAILED, None, None, seconds,
                          proc.returncode, _reason(proc.stdout, proc.stderr, proc.returncode))


def explain_registry(
    filter_string: str | None = None, *, all_versions: bool = False, parallel: int = 1,
    args: Sequence[str] = (), on_done: Callable[[VersionOutcome], None] | None = None,
) -> list[VersionOutcome]:
    """Explain every selected version, at most ``parallel`` at once; outcomes in registry order."""
    if parallel < 1:
        raise click.BadParameter(f"must be >= 1, got {parallel}", param_hint="--parallel")
    tracking.configure_http()  # bounded retries, as in `lexflow explain`
    tracking.check_reachable()  # a down server fails here, clearly, not as a bad filter
    versions = select_versions(filter_string, all_versions=all_versions)
    outcomes: dict[tuple[str, str], VersionOutcome] = {}
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = [pool.submit(explain_version, v["name"], v["version"], args) for v in versions]
        for fut in as_completed(futures):
            out = fut.result()
            outcomes[(out.name, out.version)] = out
            if on_done:
                on_done(out)
    return [outcomes[(v["name"], v["version"])] for v in versions]


def summary_table(outcomes: Sequence[VersionOutcome]) -> str:
    """A readable table: one line per version, reasons for failures below it."""
    if not outcomes:
        return "No model versions to explain."
    w = max(len(o.uri) for o in outcomes)
    lines = [f"{'version':<{w}}  {'status':<8}  {'explainable':>11}  {'seconds':>7}  run"]
    for o in outcomes:
        frac = f"{o.explainable_fraction:.0%}" if o.explainable_fraction is not None else "-"
        lines.append(f"{o.uri:<{w}}  {o.status:<8}  {frac:>11}  {o.seconds:7.1f}  {o.run_id or '-'}")
        if not o.ok:
            lines.append(f"{'':<{w}}  reason: {o.reason[:500]}")
    partial = sum(not o.ok and o.status == names.STATUS_PARTIAL for o in outcomes)
    failed = sum(not o.ok for o in outcomes) - partial
    parts = [f"{len(outcomes) - failed - partial} explained"]
    if partial:
        parts.append(f"{partial} partial (some latents got no answer)")
    lines.append(f"\n{', '.join([*parts, f'{failed} failed'])}, of {len(outcomes)}.")
    return "\n".join(lines)


def _forwarded_args(ctx: click.Context, params: dict[str, Any]) -> list[str]:
    """The explain options given on this command line, as ``lexflow explain`` arguments."""
    from click.core import ParameterSource

    out: list[str] = []
    for p in ctx.command.params:
        if not isinstance(p, click.Option) or p.name not in _EXPLAIN_OPTION_NAMES:
            continue
        if ctx.get_parameter_source(p.name) not in (ParameterSource.COMMANDLINE,
                                                    ParameterSource.ENVIRONMENT):
            continue
        value = params[p.name]
        if p.is_flag and p.secondary_opts:
            out.append(p.opts[0] if value else p.secondary_opts[0])
        elif p.is_flag:
            if value:
                out.append(p.opts[0])
        elif p.multiple:
            for item in value:
                out += [p.opts[0], str(item)]
        elif value is not None:
            out += [p.opts[0], str(value)]
    return out


@click.command("explain-registry")
@click.option("--filter", "filter_string", default=None, metavar="FILTER",
              help="MLflow model-version filter, e.g. \"name LIKE 'vae%'\" (default: every version).")
@click.option("--all", "all_versions", is_flag=True,
              help="Also re-explain versions that already have a complete explanation.")
@click.option("--parallel", default=1, show_default=True, type=click.IntRange(min=1),
              help="Versions explained at once (one process each).")
@click.option("--json", "as_json", is_flag=True, help="Print the outcomes as JSON.")
@click.pass_context
def command(ctx: click.Context, filter_string: str | None, all_versions: bool, parallel: int,
            as_json: bool, **explain_params: Any) -> None:
    """Explain every registered model version matching --filter that has no complete lexflow
    explanation yet (all of them with --all). Other options are passed to `lexflow explain`.

    Exit code 1 when any version failed or is partial (each is listed with its reason).
    """
    args = _forwarded_args(ctx, explain_params)
    total = 0

    def progress(o: VersionOutcome) -> None:
        nonlocal total
        total += 1
        state = o.status if o.ok else f"{o.status.upper()} ({o.reason[:120]})"
        click.echo(f"[{total}] {o.uri}: {state} in {o.seconds:.1f} s", err=True)

    try:
        outcomes = explain_registry(filter_string, all_versions=all_versions, parallel=parallel,
                                    args=args, on_done=progress)
    except LexflowError as exc:
        if as_json:
            click.echo(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        click.echo(f"lexflow: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    failed = [o for o in outcomes if not o.ok]
    if as_json:
        click.echo(json.dumps({"filter": filter_string, "all": all_versions,
                               "explained": len(outcomes) - len(failed), "failed": len(failed),
                               "versions": [asdict(o) for o in outcomes]}))
    else:
        click.echo(summary_table(outcomes))
    if failed:
        sys.exit(1)


def _attach_explain_options() -> tuple[str, ...]:
    """Give explain-registry every option of `lexflow explain` (forwarded when given)."""
    from lexflow.cli import explain

    taken = {p.name for p in command.params}
    added = []
    for p in explain.params:
        if isinstance(p, click.Option) and p.name not in taken and p.name not in _NOT_FORWARDED:
            command.params.append(p)
            added.append(str(p.name))
    return tuple(added)


_EXPLAIN_OPTION_NAMES = _attach_explain_options()
