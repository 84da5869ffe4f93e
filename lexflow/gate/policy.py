"""The gate's policy: a small YAML file, read and validated once into a frozen :class:`Policy`.

Every problem in a policy file is collected into one :class:`PolicyError` (exit 2), unknown keys
with a "did you mean". The format is documented in docs/gate.md (example: docs/policy.example.yaml).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lexflow import names
from lexflow.errors import brief, did_you_mean
from lexflow.gate.diffcheck import DIFF_KEYS, DiffPolicy, parse_diff
from lexflow.gate.errors import PolicyError

POLICY_SCHEMA = "lexflow.policy/1"
REVIEW_ACTIONS = ("fail", "warn")
FRACTION_OF = ("all", "active")
STATUSES = (names.STATUS_COMPLETE, names.STATUS_PARTIAL)

_TOP = ("schema", "explanation", "thresholds", "review", "explainer", "diff")
_EXPLANATION = ("status", "lexflow_version", "newer_than_version")
_THRESHOLDS = ("min_explainable_fraction", "explainable_fraction_of", "min_mean_certainty",
               "min_coverage", "count_skipped")
_REVIEW = ("terms", "action", "semantic_model", "semantic_threshold")
_EXPLAINER = ("require_mllm", "allow", "deny")


@dataclass(frozen=True)
class ReviewPolicy:
    """Concepts whose appearance in an explanation needs a person's review.

    Attributes:
        terms: words or phrases, matched case-insensitively on word boundaries.
        action: ``fail`` (the gate fails) or ``warn`` (reported, the gate may still pass).
        semantic_model: a local sentence-embedding model: a directory, a package shipping one,
            or ``packaged`` (all-MiniLM-L6-v2 from ``lexflow[semantic]``; see lexflow.semantic).
            When set, an explanation also matches a term whose cosine similarity is at least
            ``semantic_threshold``. None: words only.
        semantic_threshold: cosine similarity in [0, 1].
    """

    terms: tuple[str, ...] = ()
    action: str = "fail"
    semantic_model: str | None = None
    semantic_threshold: float = 0.6


@dataclass(frozen=True)
class ExplainerPolicy:
    """Which explainers may have written the explanation.

    Attributes:
        require_mllm: the explainer must be a multimodal LLM (not the ``measure`` explainer).
        allow: fnmatch patterns of explainer URIs, e.g. ``openai:/*``; empty: any.
        deny: fnmatch patterns that are never accepted, e.g. ``measure``.
    """

    require_mllm: bool = False
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    """What a model version needs before it may be promoted.

    Attributes:
        statuses: accepted values of ``lexflow.status`` (default: complete only).
        lexflow_version: PEP 440 specifier the writing lexflow version must satisfy, e.g.
            ``>=0.1,<1``; None: any.
        newer_than_version: the explanation run must have started after the version was created.
        min_explainable_fraction: in [0, 1]; None: not checked.
        explainable_fraction_of: ``all`` latents explained, or only ``active`` ones.
        min_mean_certainty: in [0, 1] (mean over active latents); None: not checked.
        min_coverage: in [0, 1], latents covered / latent_dim (lexflow.coverage); default 1.0:
            every latent measured and explained or judged.
        count_skipped: latents skipped by ``--top-k`` (measured, not explained) count as covered.
        review: see :class:`ReviewPolicy`; explainer: see :class:`ExplainerPolicy`.
        sha256: hex digest of the policy file's bytes (recorded with the verdict).
        source: where the policy was read from (for messages).
    """

    statuses: tuple[str, ...] = (names.STATUS_COMPLETE,)
    lexflow_version: str | None = None
    newer_than_version: bool = True
    min_explainable_fraction: float | None = None
    explainable_fraction_of: str = "all"
    min_mean_certainty: float | None = None
    min_coverage: float = 1.0
    count_skipped: bool = False
    review: ReviewPolicy = field(default_factory=ReviewPolicy)
    explainer: ExplainerPolicy = field(default_factory=ExplainerPolicy)
    diff: DiffPolicy = field(default_factory=DiffPolicy)  # lexflow.gate.diffcheck
    sha256: str = ""
    source: str = "<policy>"


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; a :class:`PolicyError` names every problem."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise PolicyError(f"Cannot read the policy file {str(p)!r}: {exc.strerror or exc}.") from exc
    return parse_policy(raw, source=str(p))


def parse_policy(raw: bytes | str, *, source: str = "<policy>") -> Policy:
    """Validate policy YAML text; every problem is reported at once."""
    from lexflow.safe_yaml import load_yaml

    data = raw.encode() if isinstance(raw, str) else raw
    doc = load_yaml(data, f"The policy {source}", PolicyError)
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise PolicyError(
            f"The policy {source} must be a mapping of keys (see docs/gate.md); got a "
            f"{type(doc).__name__}."
        )
    problems: list[str] = []
    _unknown(doc, _TOP, "", problems)
    schema = doc.get("schema", POLICY_SCHEMA)
    if schema != POLICY_SCHEMA:
        problems.append(f"schema must be {POLICY_SCHEMA!r}; got {brief(schema)}")
    expl = _section(doc, "explanation", _EXPLANATION, problems)
    thr = _section(doc, "thresholds", _THRESHOLDS, problems)
    rev = _section(doc, "review", _REVIEW, problems)
    exp = _section(doc, "explainer", _EXPLAINER, problems)
    diff = parse_diff(_section(doc, "diff", DIFF_KEYS, problems), problems)

    statuses = _strings(expl, "status", "explanation.status", problems, default=(names.STATUS_COMPLETE,))
    for s in statuses:
        if s not in STATUSES:
            problems.append(f"explanation.status: {brief(s)} is not one of {', '.join(STATUSES)}."
                            + did_you_mean(str(s)[:100], STATUSES))
    if not statuses:
        problems.append("explanation.status must name at least one accepted status")
    spec = expl.get("lexflow_version")
    if spec is not None:
        spec = str(spec)
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        try:
            SpecifierSet(spec)
        except InvalidSpecifier:
            problems.append(f"explanation.lexflow_version must be a version specifier such as "
                            f"'>=0.1,<1'; got {brief(spec)}")
    newer = _bool(expl, "newer_than_version", "explanation.newer_than_version", True, problems)

    min_frac = _fraction(thr, "min_explainable_fraction", "thresholds.min_explainable_fraction", problems)
    frac_of = thr.get("explainable_fraction_of", "all")
    if frac_of not in FRACTION_OF:
        problems.append(f"thresholds.explainable_fraction_of must be one of {', '.join(FRACTION_OF)}; "
                        f"got {brief(frac_of)}." + did_you_mean(str(frac_of)[:100], FRACTION_OF))
    min_cert = _fraction(thr, "min_mean_certainty", "thresholds.min_mean_certainty", problems)
    min_cov = _fraction(thr, "min_coverage", "thresholds.min_coverage", problems)
    count_skipped = _bool(thr, "count_skipped", "thresholds.count_skipped", False, problems)

    terms = _strings(rev, "terms", "review.terms", problems)
    if any(not t.strip() for t in terms):
        problems.append("review.terms must not contain empty terms")
    action = rev.get("action", "fail")
    if action not in REVIEW_ACTIONS:
        problems.append(f"review.action must be one of {', '.join(REVIEW_ACTIONS)}; got {brief(action)}."
                        + did_you_mean(str(action)[:100], REVIEW_ACTIONS))
    model = rev.get("semantic_model")
    if model is not None and not isinstance(model, str):
        problems.append(f"review.semantic_model must be a local directory path; got {brief(model)}")
    sem_thr = _fraction(rev, "semantic_threshold", "review.semantic_threshold", problems)

    require_mllm = _bool(exp, "require_mllm", "explainer.require_mllm", False, problems)
    allow = _strings(exp, "allow", "explainer.allow", problems)
    deny = _strings(exp, "deny", "explainer.deny", problems)

    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise PolicyError(f"The policy {source} has {len(problems)} problem(s):\n  - "
                          + "\n  - ".join(shown))
    return Policy(
        statuses=statuses, lexflow_version=spec, newer_than_version=newer,
        min_explainable_fraction=min_frac, explainable_fraction_of=str(frac_of),
        min_mean_certainty=min_cert,
        min_coverage=1.0 if min_cov is None else min_cov, count_skipped=count_skipped,
        review=ReviewPolicy(terms=tuple(t.strip() for t in terms), action=str(action),
                            semantic_model=model or None,
                            semantic_threshold=0.6 if sem_thr is None else sem_thr),
        explainer=ExplainerPolicy(require_mllm=require_mllm, allow=allow, deny=deny),
        diff=diff, sha256=hashlib.sha256(data).hexdigest(), source=source,
    )


def _unknown(section: Mapping[Any, Any], known: tuple[str, ...], where: str, problems: list[str]) -> None:
    for key in section:
        if key not in known:
            problems.append(f"unknown key {where}{brief(key)}; known: {', '.join(known)}."
                            + did_you_mean(str(key)[:100], known))


def _section(doc: Mapping[Any, Any], key: str, known: tuple[str, ...],
             problems: list[str]) -> Mapping[Any, Any]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(f"{key} must be a mapping; got {brief(value)}")
        return {}
    _unknown(value, known, f"in {key}: ", problems)
    return value


def _strings(section: Mapping[Any, Any], key: str, where: str, problems: list[str],
             default: tuple[str, ...] = ()) -> tuple[str, ...]:
    value = section.get(key)
    if value is None:
        return default
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"{where} must be a list of strings; got {brief(value)}")
        return default
    return tuple(value)


def _bool(section: Mapping[Any, Any], key: str, where: str, default: bool, problems: list[str]) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        problems.append(f"{where} must be true or false; got {brief(value)}")
        return default
    return value


def _fraction(section: Mapping[Any, Any], key: str, where: str, problems: list[str]) -> float | None:
    value = section.get(key)
    if value is None:
        return None
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value) and 0.0 <= value <= 1.0)
    if not ok:
        problems.append(f"{where} must be a number between 0 and 1; got {brief(value)}")
        return None
    return float(value)
