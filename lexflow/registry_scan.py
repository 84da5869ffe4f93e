"""``lexflow explain-registry``: explain every model version that matches a filter.

The versions are explained in this process, at most ``parallel`` at once (a thread each): the
MLflow layer writes every run by its explicit id, so runs share a process safely. A failing
version is reported with its reason and the rest go on. (A native-library abort, e.g. a segfault
in a decoder, would end all of them: run such models one ``lexflow explain`` at a time.)

By default a version is picked when it has no complete lexflow explanation of enough of its
latents: ``lexflow.status`` is missing, running, failed or partial, or its ``lexflow.coverage``
is missing or below the policy's ``thresholds.min_coverage`` (``--policy``; default 1.0, every
latent, with ``--top-k``'s skipped latents counted only under ``thresholds.count_skipped``);
``--all`` picks every matching version.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from typing import Any

import click

from lexflow import names
from lexflow.config import ExplainConfig
from lexflow.coverage import Coverage
from lexflow.errors import LexflowError
from lexflow.tracking.registry import search_versions

EXIT_PARTIAL = 3  # lexflow.cli.EXIT_PARTIAL: finished, but some latents got no answer

# `lexflow explain` options that explain-registry does not pass on (it sets them itself).
_NOT_FORWARDED = ("as_json", "no_progress", "dry_run")


@dataclass(frozen=True)
class VersionOutcome:
    """How one version's explanation went.

    Attributes:
        name, version: the model version; uri: ``models:/name/version``.
        ok: the version got a complete explanation (a ``partial`` one is not ok).
        status: the lexflow status it ended with (complete, partial) or ``failed``.
        explainable_fraction: of the result, or None when it failed.
        run_id: the MLflow run, when one was written.
        seconds: wall time of the explain process.
        exit_code: what ``lexflow explain`` would exit with (2: bad input, 1: failure while
            running, 3: partial).
        reason: why it failed ("" when ok).
        coverage: the run's lexflow.coverage value (None when it failed).
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
    coverage: str | None = None


def is_done(tags: dict[str, str], *, min_coverage: float = 1.0, count_skipped: bool = False) -> bool:
    """Whether a version's tags say it is explained: complete, with a ``lexflow.coverage`` that
    meets ``min_coverage`` (skipped latents counted only with ``count_skipped``). A version
    explained before coverage was recorded has no such tag and is not done."""
    if tags.get(names.TAG_STATUS) != names.STATUS_COMPLETE:
        return False
    coverage = Coverage.from_tag(tags.get(names.TAG_COVERAGE))
    return coverage is not None and coverage.fraction(count_skipped=count_skipped) >= min_coverage


def select_versions(filter_string: str | None, *, all_versions: bool, min_coverage: float = 1.0,
                    count_skipped: bool = False) -> list[dict[str, Any]]:
    """Versions matching ``filter_string``; without ``all_versions`` only those not done
    (:func:`is_done`)."""
    versions = search_versions(filter_string)
    if all_versions:
        return versions
    return [v for v in versions if not is_done(v["tags"], min_coverage=min_coverage,
                                               count_skipped=count_skipped)]


def explain_version(name: str, version: str, config: ExplainConfig,
                    experiment: str | None = None) -> VersionOutcome:
    """Explain ``models:/name/version`` in this process; a failure becomes the outcome's reason."""
    from lexflow.tracking.job import explain

    uri = f"models:/{name}/{version}"
    start = time.monotonic()
    try:
        result = explain(uri, config, progress=False, experiment=experiment, env_run=False)
    except Exception as exc:  # one version's failure (any kind) must not stop the others
        code = exc.exit_code if isinstance(exc, LexflowError) else 1
        return VersionOutcome(name, version, uri, False, names.STATUS_FAILED, None, None,
                              time.monotonic() - start, code, f"{type(exc).__name__}: {exc}")
    ok = result.status == names.STATUS_COMPLETE
    return VersionOutcome(name, version, uri, ok, result.status, result.explainable_fraction,
                          result.run_id, time.monotonic() - start, 0 if ok else EXIT_PARTIAL,
                          "" if ok else _partial_reason(result), coverage=result.coverage.tag())


def _partial_reason(result: Any) -> str:
    asked = [r for r in result.latents if r.status != "inactive"]
    failed = [r for r in asked if r.status == names.STATUS_FAILED]
    first = next((f for r in failed for f in r.failures), "")
    return (f"{len(failed)} of {len(asked)} latents got no answer"
            + (f" (e.g. {first[:200]})" if first else ""))


def explain_registry(
    filter_string: str | None = None, *, all_versions: bool = False, parallel: int = 1,
    config: ExplainConfig | None = None, experiment: str | None = None,
    on_done: Callable[[VersionOutcome], None] | None = None, min_coverage: float = 1.0,
    count_skipped: bool = False,
) -> list[VersionOutcome]:
    """Explain every selected version, at most ``parallel`` at once; outcomes in registry order.
    ``min_coverage`` / ``count_skipped``: when a version counts as done (:func:`is_done`)."""
    if parallel < 1:
        raise click.BadParameter(f"must be >= 1, got {parallel}", param_hint="--parallel")
    config = config or ExplainConfig()
    from lexflow.tracking.registry import check_reachable

    check_reachable()  # a down server fails here, clearly, not as a bad filter
    versions = select_versions(filter_string, all_versions=all_versions,
                               min_coverage=min_coverage, count_skipped=count_skipped)
    outcomes: dict[tuple[str, str], VersionOutcome] = {}
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="lexflow-version") as pool:
        futures = [pool.submit(explain_version, v["name"], v["version"], config, experiment)
                   for v in versions]
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
    lines = [f"{'version':<{w}}  {'status':<8}  {'explainable':>11}  {'measured':>8}  "
             f"{'seconds':>7}  run"]
    for o in outcomes:
        frac = f"{o.explainable_fraction:.0%}" if o.explainable_fraction is not None else "-"
        cov = Coverage.from_tag(o.coverage)
        measured = f"{cov.measured}/{cov.latent_dim}" if cov else "-"
        lines.append(f"{o.uri:<{w}}  {o.status:<8}  {frac:>11}  {measured:>8}  {o.seconds:7.1f}  "
                     f"{o.run_id or '-'}")
        if not o.ok:
            lines.append(f"{'':<{w}}  reason: {o.reason[:500]}")
    partial = sum(not o.ok and o.status == names.STATUS_PARTIAL for o in outcomes)
    failed = sum(not o.ok for o in outcomes) - partial
    parts = [f"{len(outcomes) - failed - partial} explained"]
    if partial:
        parts.append(f"{partial} partial (some latents got no answer)")
    lines.append(f"\n{', '.join([*parts, f'{failed} failed'])}, of {len(outcomes)}.")
    return "\n".join(lines)


@click.command("explain-registry")
@click.option("--filter", "filter_string", default=None, metavar="FILTER",
              help="MLflow model-version filter, e.g. \"name LIKE 'vae%'\" (default: every version).")
@click.option("--all", "all_versions", is_flag=True,
              help="Also re-explain versions that already have a complete explanation.")
@click.option("--parallel", default=1, show_default=True, type=click.IntRange(min=1),
              help="Versions explained at once (threads of this process).")
@click.option("--json", "as_json", is_flag=True, help="Print the outcomes as JSON.")
@click.option("--policy", "policy_path", default=None, type=click.Path(dir_okay=False),
              help="Gate policy whose thresholds.min_coverage (default 1.0) and count_skipped say "
                   "when a version counts as explained.")
def command(filter_string: str | None, all_versions: bool, parallel: int,
            as_json: bool, policy_path: str | None = None, **explain_params: Any) -> None:
    """Explain every registered model version matching --filter that has no complete lexflow
    explanation of enough of its latents yet (coverage below the policy's min_coverage, default
    every latent; all versions with --all). Other options are those of `lexflow explain`.

    Exit code 1 when any version failed or is partial (each is listed with its reason).
    """
    from lexflow.cli import config_from_options

    total = 0

    def progress(o: VersionOutcome) -> None:
        nonlocal total
        total += 1
        state = o.status if o.ok else f"{o.status.upper()} ({o.reason[:120]})"
        click.echo(f"[{total}] {o.uri}: {state} in {o.seconds:.1f} s", err=True)

    try:
        min_coverage, count_skipped = 1.0, False
        if policy_path:
            from lexflow.gate.policy import load_policy

            policy = load_policy(policy_path)
            min_coverage, count_skipped = policy.min_coverage, policy.count_skipped
        config = config_from_options(**explain_params)
        # MLflow prints "View run ..." links on stdout when a run ends: stdout is the summary only.
        with contextlib.redirect_stdout(sys.stderr):
            outcomes = explain_registry(filter_string, all_versions=all_versions,
                                        parallel=parallel, config=config,
                                        experiment=explain_params.get("experiment"),
                                        on_done=progress, min_coverage=min_coverage,
                                        count_skipped=count_skipped)
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
    """Give explain-registry every option of `lexflow explain` (its config is built the same way)."""
    from lexflow.cli import explain

    taken = {p.name for p in command.params}
    added = []
    for p in explain.params:
        if isinstance(p, click.Option) and p.name not in taken and p.name not in _NOT_FORWARDED:
            command.params.append(p)
            added.append(str(p.name))
    return tuple(added)


_EXPLAIN_OPTION_NAMES = _attach_explain_options()
