"""The gate's checks: pure functions from what the registry holds to a :class:`GateResult`.

Every check runs; every failure is kept (the way MLflow's threshold validation collects all
failed metrics into one message), so a CI log shows everything to fix in one go.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from lexflow import names
from lexflow.gate.diffcheck import LIMITS, DiffEvidence, DiffPolicy
from lexflow.gate.policy import Policy

# texts, terms -> [len(texts), len(terms)] cosine similarities (a sentence-embedding model)
Embedder = Callable[[Sequence[str], Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class VersionEvidence:
    """What the gate reads about one model version (all from the registry and the run).

    Attributes:
        name, version: the registered model version.
        tags: its tags (the lexflow.* ones matter).
        explanations: the parsed ``lexflow/explanations.json`` of the run in ``lexflow.run_id``,
            or None when the status says the run did not finish (failed, running).
        run_start_ms: start time of that run, milliseconds since the epoch (None if unknown).
        version_created_ms: creation time of the model version, milliseconds since the epoch.
    """

    name: str
    version: str
    tags: Mapping[str, str]
    explanations: Mapping[str, Any] | None
    run_start_ms: int | None
    version_created_ms: int

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class Check:
    """One check's outcome.

    Attributes:
        name: short id (``status``, ``lexflow_version``, ``review.latent_03`` ...).
        outcome: ``pass``, ``fail`` or ``warn`` (a warning never fails the gate).
        message: what was found and what the policy asked for.
    """

    name: str
    outcome: str
    message: str


@dataclass(frozen=True)
class GateResult:
    """The verdict on one model version.

    Attributes:
        model_uri: ``models:/name/version``; run_id: the explanation run judged.
        checks: every check in the order they ran.
        policy_sha256: digest of the policy file; policy_source: its path.
        checked_at: ISO 8601 UTC time of the check.
    """

    model_uri: str
    run_id: str | None
    checks: tuple[Check, ...]
    policy_sha256: str
    policy_source: str
    checked_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def status(self) -> str:
        return names.GATE_PASSED if self.passed else names.GATE_FAILED

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.outcome == "fail")

    @property
    def warnings(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.outcome == "warn")

    def message(self) -> str:
        """Every failed check, one a line (empty when the gate passed)."""
        return "\n".join(c.message for c in self.failures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_uri": self.model_uri, "run_id": self.run_id, "status": self.status,
            "passed": self.passed, "checked_at": self.checked_at,
            "policy": {"path": self.policy_source, "sha256": self.policy_sha256},
            "failures": [c.message for c in self.failures],
            "warnings": [c.message for c in self.warnings],
            "checks": [{"name": c.name, "outcome": c.outcome, "message": c.message}
                       for c in self.checks],
        }


def evaluate(policy: Policy, ev: VersionEvidence, *, embedder: Embedder | None = None,
             diff: Any = None) -> GateResult:
    """Run every check of ``policy`` against ``ev`` (and ``diff``, a
    :class:`lexflow.gate.diffcheck.DiffEvidence`, for the policy's ``diff`` section)."""
    checks: list[Check] = [_status(policy, ev)]
    doc = ev.explanations
    if doc is not None:
        checks.append(_lexflow_version(policy, doc))
        if policy.newer_than_version:
            checks.append(_newer(ev))
        checks.append(_coverage(policy, doc, ev.uri))
        if policy.min_explainable_fraction is not None:
            checks.append(_fraction(policy, doc))
        if policy.min_mean_certainty is not None:
            checks.append(_certainty(policy, doc))
        checks.extend(_explainer(policy, doc))
        checks.extend(_review(policy, doc, embedder))
        checks.extend(diff_checks(policy.diff, diff))
    return GateResult(ev.uri, ev.tags.get(names.TAG_RUN_ID), tuple(checks), policy.sha256, policy.source)


def _ok(name: str, message: str) -> Check:
    return Check(name, "pass", message)


def _status(policy: Policy, ev: VersionEvidence) -> Check:
    status = ev.tags.get(names.TAG_STATUS, "")
    if status in policy.statuses:
        return _ok("status", f"Explanation status {status!r} is accepted.")
    why = f" ({ev.tags[names.TAG_ERROR]})" if ev.tags.get(names.TAG_ERROR) else ""
    return Check("status", "fail",
                 f"Explanation status check failed: {ev.uri} has lexflow.status = {status!r}{why}, "
                 f"accepted = {', '.join(policy.statuses)}.")


def _lexflow_version(policy: Policy, doc: Mapping[str, Any]) -> Check:
    written = str(doc.get("lexflow_version", ""))
    if policy.lexflow_version is None:
        return _ok("lexflow_version", f"Written by lexflow {written} (any version accepted).")
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        ok = Version(written) in SpecifierSet(policy.lexflow_version)
    except InvalidVersion:
        ok = False
    if ok:
        return _ok("lexflow_version", f"Written by lexflow {written}, within {policy.lexflow_version}.")
    return Check("lexflow_version", "fail",
                 f"lexflow version check failed: explanation written by lexflow {written!r}, "
                 f"required {policy.lexflow_version}.")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _newer(ev: VersionEvidence) -> Check:
    if ev.run_start_ms is not None and ev.run_start_ms >= ev.version_created_ms:
        return _ok("newer_than_version", "The explanation run started after the version was created.")
    started = _iso(ev.run_start_ms) if ev.run_start_ms is not None else "unknown"
    return Check("newer_than_version", "fail",
                 f"Freshness check failed: explanation run {ev.tags.get(names.TAG_RUN_ID)} started "
                 f"{started}, before {ev.uri} was created ({_iso(ev.version_created_ms)}). "
                 f"Explain this version again.")


def _uncovered(policy: Policy, doc: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Labels of the latents not measured, and of those skipped that the policy does not count."""
    d = int(doc.get("latent_dim") or 0)
    seen = {r.get("index") for r in (doc.get("latents") or []) + (doc.get("skipped") or [])
            if isinstance(r, Mapping)}
    missing = [names.latent_label(i, d) for i in range(d) if i not in seen]
    skipped = [] if policy.count_skipped else [
        str(r.get("label", r.get("index"))) for r in doc.get("skipped") or [] if isinstance(r, Mapping)]
    return missing, skipped


def _listed(labels: Sequence[str], limit: int = 20) -> str:
    more = f" and {len(labels) - limit} more" if len(labels) > limit else ""
    return ", ".join(labels[:limit]) + more


def _coverage(policy: Policy, doc: Mapping[str, Any], uri: str) -> Check:
    """Latents covered / latent_dim, counted from the records (not from a stored summary)."""
    from lexflow.coverage import Coverage

    cov = Coverage.from_document(doc)
    value = cov.fraction(count_skipped=policy.count_skipped)
    need = policy.min_coverage
    counted = "skipped latents counted" if policy.count_skipped else "skipped latents not counted"
    if value >= need:
        return _ok("coverage", f"coverage = {value:.3f} >= {need} ({cov.describe()}; {counted}).")
    missing, skipped = _uncovered(policy, doc)
    parts = ([f"not measured: {_listed(missing)}"] if missing else []) + (
        [f"skipped by top_k: {_listed(skipped)}"] if skipped else [])
    return Check("coverage", "fail",
                 f"Coverage check failed: {cov.describe()}; coverage = {value:.3f} ({counted}), "
                 f"min_coverage = {need}. Latents {'; '.join(parts)}. Explain every latent "
                 f"(`lexflow explain {uri}` without --latents/--top-k)"
                 + (" or set thresholds.count_skipped: true" if skipped else "")
                 + ".")


def _fraction(policy: Policy, doc: Mapping[str, Any]) -> Check:
    """Explainable latents over all latent_dim latents (or every latent not known to be
    inactive): a latent a subset run did not explain counts as not explainable."""
    latents = [r for r in doc.get("latents") or [] if isinstance(r, Mapping)]
    explainable = sum(bool(r.get("explainable")) for r in latents)
    total = max(int(doc.get("latent_dim") or 0), len(latents))
    if policy.explainable_fraction_of == "active":
        total -= sum(r.get("status") == "inactive" for r in latents)
    value = explainable / total if total > 0 else 0.0
    need = float(policy.min_explainable_fraction or 0.0)
    label = f"explainable_fraction (of {policy.explainable_fraction_of} latents)"
    if value >= need:
        return _ok("explainable_fraction", f"{label} = {value:.3f} >= {need}.")
    return Check("explainable_fraction", "fail",
                 f"Metric {label} threshold check failed: candidate model explainable_fraction = "
                 f"{value:.3f}, explainable_fraction threshold = {need}.")


def _certainty(policy: Policy, doc: Mapping[str, Any]) -> Check:
    value = float((doc.get("summary") or {}).get("mean_certainty", 0.0))
    need = float(policy.min_mean_certainty or 0.0)
    if value >= need:
        return _ok("mean_certainty", f"mean_certainty = {value:.3f} >= {need}.")
    return Check("mean_certainty", "fail",
                 f"Metric mean_certainty threshold check failed: candidate model mean_certainty = "
                 f"{value:.3f}, mean_certainty threshold = {need}.")


def _explainer(policy: Policy, doc: Mapping[str, Any]) -> list[Check]:
    info = doc.get("explainer") or {}
    uri = str(info.get("uri", ""))
    is_mllm = bool(info.get("is_mllm"))
    p = policy.explainer
    out: list[Check] = []
    if p.require_mllm and not is_mllm:
        out.append(Check("explainer.require_mllm", "fail",
                         f"Explainer check failed: explainer {uri!r} is not a multimodal LLM; "
                         f"the policy requires one (explainer.require_mllm)."))
    denied = [pat for pat in p.deny if fnmatch.fnmatchcase(uri, pat)]
    if denied:
        out.append(Check("explainer.deny", "fail",
                         f"Explainer check failed: explainer {uri!r} matches denied pattern "
                         f"{denied[0]!r}."))
    if p.allow and not any(fnmatch.fnmatchcase(uri, pat) for pat in p.allow):
        out.append(Check("explainer.allow", "fail",
                         f"Explainer check failed: explainer {uri!r} matches none of the allowed "
                         f"patterns {', '.join(p.allow)}."))
    return out or [_ok("explainer", f"Explainer {uri!r} is accepted.")]


def _word_forms(word: str) -> str:
    """A word and its simple English inflections: gender(s), age(s|d|ing), ageing,
    ethnicity/ethnicities, tone(s|d)."""
    w = re.escape(word)
    if len(word) > 2 and word.lower().endswith("y") and word[-2].lower() not in "aeiou":
        return re.escape(word[:-1]) + r"(?:y|ies|ied)"
    if word.lower().endswith("e"):
        return w + r"(?:s|d|r|rs|ing)?|" + re.escape(word[:-1]) + r"(?:ing|ed|er|ers)"
    return w + r"(?:s|es|ed|ing|er|ers)?"


def term_pattern(term: str) -> re.Pattern[str]:
    """A case-insensitive match of ``term`` on word boundaries: its words joined by spaces,
    hyphens, underscores or nothing ("skin tone", "skin-tone", "skintone"), each word in its
    simple inflections ("genders", "aged")."""
    words = [f"(?:{_word_forms(w)})" for w in re.split(r"[\s\-_]+", term.strip()) if w]
    return re.compile(r"(?<![^\W_])" + r"[\s\-_]*".join(words) + r"(?![^\W_])", re.IGNORECASE)


def _review(policy: Policy, doc: Mapping[str, Any], embedder: Embedder | None) -> list[Check]:
    r = policy.review
    if not r.terms:
        return []
    texts: list[tuple[str, str]] = []  # (label, text): the name, the explanation, every answer
    for rec in doc.get("latents") or []:
        parts = [rec.get("name"), rec.get("explanation"), *(rec.get("answers") or [])]
        seen = list(dict.fromkeys(str(t) for t in parts if t))
        if seen:
            texts.append((str(rec.get("label", rec.get("index"))), " | ".join(seen)))
    patterns = [(t, term_pattern(t)) for t in r.terms]
    hits: dict[str, list[str]] = {}
    for label, text in texts:
        found = [repr(t) if m.group(0).lower() == t.lower() else f"{t!r} (as {m.group(0)!r})"
                 for t, pat in patterns if (m := pat.search(text))]
        if found:
            hits[label] = found
    if embedder is not None and texts:
        sims = embedder([t for _, t in texts], list(r.terms))
        for (label, _), row in zip(texts, sims, strict=True):
            for term, s in zip(r.terms, row, strict=True):
                if float(s) >= r.semantic_threshold and not any(
                        h.startswith(repr(term)) for h in hits.get(label, [])):
                    hits.setdefault(label, []).append(f"{term!r} (similarity {float(s):.2f})")
    out: list[Check] = []
    missing, skipped = _uncovered(policy, doc)
    if missing or skipped:
        out.append(Check("review.coverage", r.action,
                         f"Review check {'failed' if r.action == 'fail' else 'warning'}: "
                         f"{len(missing) + len(skipped)} latent(s) were not explained "
                         f"({_listed(missing + skipped)}), so the review terms could not be checked "
                         f"against their meaning."))
    by_label = dict(texts)
    for label, found in hits.items():
        shown = by_label[label] if len(by_label[label]) <= 200 else by_label[label][:199] + "…"
        out.append(Check(f"review.latent_{label}", r.action,
                         f"Review check {'failed' if r.action == 'fail' else 'warning'}: latent "
                         f"{label} touches {', '.join(found)}: {shown!r}."))
    return out or [_ok("review", f"No explanation touches the {len(r.terms)} review term(s).")]


def diff_checks(policy: DiffPolicy, evidence: DiffEvidence | None) -> list[Check]:
    """One Check per limit (or one for a missing ``compare_to`` version)."""
    from lexflow.diff.match import STATUS_TITLES

    if policy.compare_to is None:
        return []
    if evidence is None or evidence.result is None:
        why = evidence.missing if evidence else "no diff was made"
        outcome = policy.if_missing
        word = "failed" if outcome == "fail" else "warning"
        return [Check("diff.compare_to", outcome,
                      f"Diff check {word}: nothing to compare with ({why}); diff.if_missing = "
                      f"{policy.if_missing}.")]
    result = evidence.result
    out: list[Check] = []
    for key, status in LIMITS:
        limit = getattr(policy, key)
        if limit is None:
            continue
        found = result.latents_of(status)
        title = STATUS_TITLES[status]
        if len(found) > limit:
            out.append(Check(f"diff.{key}", "fail",
                             f"Diff check failed: {len(found)} latent(s) {title} since "
                             f"{result.against} ({result.a.model_uri}), at most {limit} allowed: "
                             f"latent(s) {', '.join(found)}."))
        else:
            out.append(Check(f"diff.{key}", "pass",
                             f"{len(found)} latent(s) {title} since {result.against}, at most "
                             f"{limit} allowed."))
    if not out:
        out.append(Check("diff", "pass", f"Diff against {result.against}: {result.summary()}."))
    return out
