"""Perturbation: which latent codes to decode.

For a VAE with a standard normal prior, latent z_i is set to each frame value (prior std units,
-span .. +span, increasing) while the others keep the values of a base code z ~ N(0, I). Base codes
come from ``seed`` so a rerun draws the same grids. The disentanglement bias adds a comparison row:
the same traversal of z_i with another latent z_j clamped to a different value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from lexflow.adapters.base import PlannedDecoder
from lexflow.config import ExplainConfig

# Units of a plan's column values (what ExplainRequest.unit and the prompts say).
UNIT_PRIOR_STD = "prior std"
UNIT_GUIDANCE_STEPS = "guidance steps"
UNIT_DIRECTION_MULTIPLE = "multiples of the attribute direction"


class Plan(Protocol):
    """What every traversal plan provides: which codes to decode for item ``index``.

    Attributes:
        kind: what an index names (``latent``, ``group``, ``attribute``, ``direction``).
        unit: the unit of ``values`` (UNIT_PRIOR_STD, UNIT_GUIDANCE_STEPS,
            UNIT_DIRECTION_MULTIPLE).
        values: the columns' values, increasing; items: how many items there are;
        rows: base samples (grid rows); steps: len(values).
        names: a name per item, or None; condition: the condition all items share, or None;
        members: the latents each item moves (None when an item is one latent or a direction);
        conditions: a condition per item (CSVAE attributes), or None.
    """

    @property
    def kind(self) -> str: ...

    @property
    def unit(self) -> str: ...

    @property
    def values(self) -> tuple[float, ...]: ...

    @property
    def items(self) -> int: ...

    @property
    def rows(self) -> int: ...

    @property
    def steps(self) -> int: ...

    @property
    def names(self) -> tuple[str, ...] | None: ...

    @property
    def condition(self) -> str | None: ...

    @property
    def members(self) -> tuple[tuple[int, ...], ...] | None: ...

    @property
    def conditions(self) -> tuple[str, ...] | None: ...

    def codes(self, index: int) -> np.ndarray: ...

    def comparison_codes(self, index: int, partner: int) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


class _Grid:
    """rows (one per base code) and steps (one per column value) of a VAE plan's grid."""

    base_codes: np.ndarray
    values: tuple[float, ...]

    @property
    def rows(self) -> int:
        return int(self.base_codes.shape[0])

    @property
    def steps(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class TraversalPlan(_Grid):
    """The codes to decode for a model with ``latent_dim`` latents.

    Attributes:
        latent_dim: d.
        values: frame values in prior std units, increasing (the grid's columns).
        base_codes: float32 [rows, d], one base code per grid row, drawn from N(0, I).
    """

    latent_dim: int
    values: tuple[float, ...]
    base_codes: np.ndarray
    # What an explained item is (see VectorPlan and lexflow.diffusion.guidance.DirectionPlan).
    kind: ClassVar[str] = "latent"
    unit: ClassVar[str] = UNIT_PRIOR_STD
    names: ClassVar[tuple[str, ...] | None] = None
    condition: ClassVar[str | None] = None
    members: ClassVar[tuple[tuple[int, ...], ...] | None] = None
    conditions: ClassVar[tuple[str, ...] | None] = None

    @property
    def items(self) -> int:
        return self.latent_dim

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "unit": self.unit, "values": list(self.values)}

    @classmethod
    def from_config(cls, latent_dim: int, config: ExplainConfig) -> TraversalPlan:
        return cls(latent_dim, tuple(config.frame_values()), _base_codes(latent_dim, config))

    def codes(self, index: int) -> np.ndarray:
        """float32 [rows * steps, d]: row-major, z_index swept through ``values`` in each row."""
        z = np.repeat(self.base_codes, self.steps, axis=0)
        z[:, index] = np.tile(np.asarray(self.values, dtype=np.float32), self.rows)
        return z

    def clamp_value(self, partner: int) -> float:
        """A value for the clamped latent that differs clearly from the first base code's."""
        span = max(abs(v) for v in self.values)
        current = float(self.base_codes[0, partner])
        return -2.0 * span / 3.0 if current >= 0 else 2.0 * span / 3.0

    def comparison_codes(self, index: int, partner: int) -> np.ndarray:
        """float32 [2 * steps, d]: the first base row's traversal, then the same with
        ``partner`` clamped to :meth:`clamp_value` (the disentanglement comparison row)."""
        z = np.repeat(self.base_codes[:1], 2 * self.steps, axis=0)
        z[:, index] = np.tile(np.asarray(self.values, dtype=np.float32), 2)
        z[self.steps :, partner] = self.clamp_value(partner)
        return z


@dataclass(frozen=True)
class VectorPlan(_Grid):
    """Items that each move several latents at once, for a VAE with ``latent_dim`` latents.

    - ``group`` (the combination bias, metadata ``groups``): item g sets every latent of group g
      to the frame value (prior std units, -span .. +span), like a one-latent traversal.
    - ``attribute`` (a CSVAE label subspace, metadata ``attributes``): item a adds
      value * direction_a to the base code, value = 0 .. attribute_span (the paper: 0..4), where
      direction_a = mean(w | y_a = 1) - mean(w | y_a = 0) in the label subspace
      (see :mod:`lexflow.csvae`); explained with the conditional bias naming y_a.

    Attributes:
        kind: ``group`` or ``attribute``; unit: of ``values``.
        vectors: float32 [items, d]; for groups the 0/1 membership of each latent.
        members: the latents each item moves.
        names: a name per item, or None; conditions: the condition of each item (attributes).
    """

    kind: str
    unit: str
    latent_dim: int
    values: tuple[float, ...]
    base_codes: np.ndarray
    vectors: np.ndarray
    members: tuple[tuple[int, ...], ...]
    names: tuple[str, ...] | None = None
    conditions: tuple[str, ...] | None = None
    condition: str | None = None

    @property
    def items(self) -> int:
        return int(self.vectors.shape[0])

    def _move(self, z: np.ndarray, index: int, values: np.ndarray) -> np.ndarray:
        if self.kind == "group":
            for j in self.members[index]:
                z[:, j] = values
        else:
            z += values[:, None] * self.vectors[index][None]
        return z

    def codes(self, index: int) -> np.ndarray:
        """float32 [rows * steps, d]: row-major, item ``index`` swept through ``values``."""
        z = np.repeat(self.base_codes, self.steps, axis=0)
        return self._move(z, index, np.tile(np.asarray(self.values, np.float32), self.rows))

    def clamp_value(self, partner: int) -> float:
        return 2.0 * max(abs(v) for v in self.values) / 3.0

    def comparison_codes(self, index: int, partner: int) -> np.ndarray:
        """float32 [2 * steps, d]: the first row's traversal, then again with item ``partner``
        moved to :meth:`clamp_value`."""
        z = np.repeat(self.base_codes[:1], 2 * self.steps, axis=0)
        z[self.steps :] = self._move(z[self.steps :], partner,
                                     np.full(self.steps, self.clamp_value(partner), np.float32))
        return self._move(z, index, np.tile(np.asarray(self.values, np.float32), 2))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "unit": self.unit, "values": list(self.values),
                "members": [list(m) for m in self.members],
                "names": list(self.names) if self.names else None}


def _base_codes(latent_dim: int, config: ExplainConfig) -> np.ndarray:
    base = np.random.default_rng(config.seed).standard_normal((config.rows, latent_dim))
    base = base.astype(np.float32)
    base.setflags(write=False)
    return base


def group_plan(latent_dim: int, groups: Any, config: ExplainConfig,
               names: Any = None) -> VectorPlan:
    """The combination bias: one item per group of latents (metadata ``groups``)."""
    from lexflow.errors import ModelContractError

    ok = isinstance(groups, (list, tuple)) and groups and all(
        isinstance(g, (list, tuple)) and g and all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < latent_dim for i in g)
        for g in groups)
    if not ok:
        raise ModelContractError(
            f"MLmodel metadata lexflow.groups must be a non-empty list of non-empty lists of "
            f"latent indices in 0..{latent_dim - 1}; got {groups!r}."
        )
    if names is not None and (not isinstance(names, (list, tuple)) or len(names) != len(groups)):
        raise ModelContractError(
            f"MLmodel metadata lexflow.group_names must name each of the {len(groups)} groups; "
            f"got {names!r}."
        )
    vectors = np.zeros((len(groups), latent_dim), np.float32)
    for g, members in enumerate(groups):
        vectors[g, list(members)] = 1.0
    return VectorPlan("group", UNIT_PRIOR_STD, latent_dim, tuple(config.frame_values()),
                      _base_codes(latent_dim, config), vectors,
                      tuple(tuple(int(i) for i in g) for g in groups),
                      tuple(str(n) for n in names) if names else None)


def attribute_plan(latent_dim: int, attributes: Any, config: ExplainConfig,
                   span: float = 4.0) -> VectorPlan:
    """CSVAE attribute directions (metadata ``attributes``: {label: [d floats]})."""
    from lexflow.errors import ModelContractError

    if not isinstance(attributes, dict) or not attributes:
        raise ModelContractError(
            "MLmodel metadata lexflow.attributes must map attribute labels to directions "
            f"(lists of {latent_dim} floats; see lexflow.csvae.csvae_metadata); got {attributes!r}."
        )
    labels = tuple(str(k) for k in attributes)
    try:
        vectors = np.asarray([attributes[k] for k in attributes], dtype=np.float32)
    except (TypeError, ValueError):
        vectors = np.zeros((0,), np.float32)
    if vectors.shape != (len(labels), latent_dim) or not np.isfinite(vectors).all():
        raise ModelContractError(
            f"MLmodel metadata lexflow.attributes: each direction must be {latent_dim} finite "
            f"floats; got shape {vectors.shape}."
        )
    n = config.steps
    values = tuple(span * k / (n - 1) for k in range(n))
    members = tuple(tuple(int(i) for i in np.flatnonzero(v)) for v in vectors)
    return VectorPlan("attribute", UNIT_DIRECTION_MULTIPLE, latent_dim, values,
                      _base_codes(latent_dim, config), vectors, members, labels,
                      tuple(f"attribute label {label!r} (y = 1)" for label in labels))


def plan_for(decoder: Any, metadata: dict[str, Any], config: ExplainConfig, bias: str) -> Plan:
    """The plan for a model: its own (diffusion directions), groups (combination bias),
    attribute directions (conditional bias with metadata ``attributes``), or one latent at a time."""
    if isinstance(decoder, PlannedDecoder):
        plan: Plan = decoder.traversal_plan(config)
        return plan
    if bias == "combination":
        return group_plan(decoder.latent_dim, metadata.get("groups"), config,
                          metadata.get("group_names"))
    if bias == "conditional" and metadata.get("attributes"):
        return attribute_plan(decoder.latent_dim, metadata["attributes"], config,
                              float(metadata.get("attribute_span", 4.0)))
    return TraversalPlan.from_config(decoder.latent_dim, config)
