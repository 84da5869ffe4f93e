"""The promotion gate: may this model version be promoted, given its lexflow explanation?

::

    lexflow gate models:/vae/7 --policy policy.yaml [--promote champion] [--json]

Stages, one module each: :mod:`~lexflow.gate.policy` (read the YAML once into a frozen Policy),
:mod:`~lexflow.gate.registry` (every MLflow call: read tags and explanations.json, write the
verdict, move the alias), :mod:`~lexflow.gate.checks` (pure: evidence + policy -> GateResult),
:mod:`~lexflow.gate.cli` (the click command). Exit codes: 0 passed, 1 failed, 2 bad input.
"""

from __future__ import annotations

from lexflow.gate.checks import Check, GateResult, VersionEvidence, evaluate
from lexflow.gate.errors import (
    ForeignSchemaError,
    GateInputError,
    NotExplainedError,
    PolicyError,
    StaleExplanationError,
)
from lexflow.gate.policy import Policy, load_policy, parse_policy

__all__ = [
    "Check",
    "ForeignSchemaError",
    "GateInputError",
    "GateResult",
    "NotExplainedError",
    "Policy",
    "PolicyError",
    "StaleExplanationError",
    "VersionEvidence",
    "evaluate",
    "gate",
    "load_policy",
    "parse_policy",
]


def gate(model_uri: str, policy: Policy, *, promote: str | None = None,
         record: bool = False) -> GateResult:
    """Judge the version ``model_uri`` names against ``policy``.

    With ``record`` (implied by ``promote``) the verdict is written as ``lexflow.gate.*`` tags;
    with ``promote`` the alias is set only when the gate passed. Raises a GateInputError (exit 2)
    when the version cannot be judged.
    """
    from lexflow.gate import registry

    if promote is not None:
        registry.check_alias(promote)
    embedder = None
    if policy.review.terms and policy.review.semantic_model:
        from lexflow.gate.semantic import local_embedder

        embedder = local_embedder(policy.review.semantic_model)
    ev = registry.read_version(model_uri)
    result = evaluate(policy, ev, embedder=embedder, diff=_diff_evidence(policy, ev))
    if not (record or promote):
        return result
    from lexflow.signals import deferred, sigterm_raises

    # A SIGTERM while the alias and the verdict are written waits until both are written whole,
    # then ends the command (Terminated, exit 143): never an alias moved without its verdict, or
    # the old lexflow.gate.status deleted and the new one not yet written.
    with sigterm_raises(), deferred():
        if promote and result.passed:
            registry.promote(ev.name, ev.version, promote)
        registry.record(result, ev.name, ev.version)  # after the alias: its status comes last
    return result


def _diff_evidence(policy: Policy, ev: VersionEvidence) -> object:
    """The diff of ``ev`` against ``policy.diff.compare_to`` (None when the policy has no diff
    section or the version has no finished explanation); a ``compare_to`` naming no version is
    carried as ``missing``. A compare_to version without explanations is bad input (exit 2)."""
    from lexflow.gate.diffcheck import DiffEvidence

    if policy.diff.compare_to is None or ev.explanations is None:
        return None
    from lexflow.diff import diff
    from lexflow.errors import ModelNotFoundError

    try:
        return DiffEvidence(diff(policy.diff.other_uri(ev.name), ev.uri))
    except ModelNotFoundError as exc:
        return DiffEvidence(missing=str(exc))
