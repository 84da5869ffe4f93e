"""The gate's ``diff`` section: how far a candidate's meanings may move from another version's
(usually the champion's), judged on a fresh :func:`lexflow.diff.diff` (pure, except that
:func:`lexflow.gate.gate` makes the diff).

::

    diff:
      compare_to: champion   # an alias of the same registered model, or a version number
      max_lost: 0            # latents explained there and not here
      max_changed: 2         # matched latents whose meaning changed
      max_new: null          # latents explained here only (null: not limited)
      if_missing: fail       # the alias names no version: fail | warn (a first promotion)

A failure names the latents concerned (the checks: :func:`lexflow.gate.checks.diff_checks`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lexflow.errors import did_you_mean

DIFF_KEYS = ("compare_to", "max_lost", "max_changed", "max_new", "if_missing")
IF_MISSING = ("fail", "warn")
LIMITS = (("max_lost", "lost"), ("max_changed", "changed"), ("max_new", "new"))


@dataclass(frozen=True)
class DiffPolicy:
    """Limits on the diff against ``compare_to``.

    Attributes:
        compare_to: an alias (``champion``) or version number of the same registered model;
            None: no diff check.
        max_lost, max_changed, max_new: the most latents allowed with that status; None: any.
        if_missing: what a ``compare_to`` naming no version does: ``fail`` or ``warn``.
    """

    compare_to: str | None = None
    max_lost: int | None = None
    max_changed: int | None = None
    max_new: int | None = None
    if_missing: str = "fail"

    def other_uri(self, name: str) -> str:
        ref = str(self.compare_to)
        return f"models:/{name}/{ref}" if ref.isdigit() else f"models:/{name}@{ref}"


@dataclass(frozen=True)
class DiffEvidence:
    """The diff the gate judges: ``result`` (a lexflow.diff.DiffResult), or ``missing`` saying
    why there is none (the version ``compare_to`` names does not exist)."""

    result: Any = None
    missing: str | None = None


def parse_diff(section: Mapping[Any, Any], problems: list[str]) -> DiffPolicy:
    """The ``diff`` section (unknown keys are reported by the caller)."""
    ref = section.get("compare_to")
    if ref is not None and (isinstance(ref, bool) or not isinstance(ref, (str, int))
                            or not str(ref).strip()):
        problems.append(f"diff.compare_to must be an alias or version number; got {ref!r}")
        ref = None
    limits: dict[str, int | None] = {}
    for key, _ in LIMITS:
        value = section.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            problems.append(f"diff.{key} must be a whole number >= 0; got {value!r}")
            value = None
        limits[key] = value
        if value is not None and ref is None and "compare_to" not in section:
            problems.append(f"diff.{key} needs diff.compare_to (the version to compare with)")
    missing = section.get("if_missing", "fail")
    if missing not in IF_MISSING:
        problems.append(f"diff.if_missing must be one of {', '.join(IF_MISSING)}; got {missing!r}."
                        + did_you_mean(str(missing), IF_MISSING))
        missing = "fail"
    return DiffPolicy(compare_to=None if ref is None else str(ref).strip(),
                      max_lost=limits["max_lost"], max_changed=limits["max_changed"],
                      max_new=limits["max_new"], if_missing=str(missing))
