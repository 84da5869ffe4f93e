"""Guidance traversals along h-space directions, and the plan that turns them into codes.

Each of +v_k and -v_k is applied in ``steps`` guidance steps at the edit timestep t:

    x <- x + g * (eps(x + d * v, t) - eps(x, t))

(d = 1; g = 0.1 for a DDPM, 1 for Stable Diffusion; 16 steps, frames 0, 4, 8, 12, 16 kept in the
paper). A grid row is the -v frames (farthest first), the base x_t, then the +v frames, so the
columns read -direction ... base ... +direction, left to right like a VAE traversal. A column's
value is the signed number of guidance steps taken.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from lexflow.diffusion.hspace import SIGN_CONVENTION, Directions
from lexflow.errors import ConfigError

# x [B, *shape] at the edit timestep -> eps [B, *shape] under the edit condition.
EpsAt = Callable[[Any], Any]


def frame_values(guidance_steps: int, columns: int) -> tuple[float, ...]:
    """Signed guidance-step counts of the columns, evenly spaced, increasing: -G .. 0 .. +G."""
    if columns > 2 * guidance_steps + 1:
        raise ConfigError(
            f"steps={columns} columns need at least {columns // 2} guidance steps per sign; the "
            f"model is set to guidance_steps={guidance_steps}. Use at most "
            f"{2 * guidance_steps + 1} steps."
        )
    raw = np.linspace(-guidance_steps, guidance_steps, columns)
    return tuple(float(round(v)) for v in raw)


def guide(eps_at: EpsAt, x: Any, v: Any, *, steps: int, scale: float, delta: float,
          keep: set[int]) -> dict[int, Any]:
    """Guidance steps from x along v (both [B, *shape]); x after each step count in ``keep``."""
    import torch

    out = {0: x} if 0 in keep else {}
    for j in range(1, steps + 1):
        both = eps_at(torch.cat([x + delta * v, x]))
        moved, here = both.chunk(2)
        x = x + scale * (moved - here)
        if j in keep:
            out[j] = x
    return out


@dataclass
class DirectionPlan:
    """The codes to decode for a diffusion model: x_t frames along each h-space direction.

    Built by :meth:`lexflow.adapters.diffusers_pipeline.DiffusionPipelineAdapter.traversal_plan`;
    the base latents and the directions are computed on first use (``prepare``), not at build.

    Attributes:
        items: number of directions k (explained items; index i means "direction i").
        values: signed guidance-step counts of the columns, increasing.
        prepare: () -> (base x_t [rows, *shape], Directions).
        eps_at: eps at the edit timestep under the edit condition.
        guidance_steps, guidance_scale, delta: G, g, d of the update rule.
        condition: the edit prompt (Stable Diffusion), or None.
        details: what explanations.json records about the traversal.
    """

    items: int
    rows: int
    values: tuple[float, ...]
    prepare: Callable[[], tuple[Any, Directions]]
    eps_at: EpsAt
    guidance_steps: int
    guidance_scale: float
    delta: float
    condition: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    kind: str = "direction"
    unit: str = "guidance steps"  # lexflow.stages.plan.UNIT_GUIDANCE_STEPS
    names: tuple[str, ...] | None = None
    members: tuple[tuple[int, ...], ...] | None = None  # a direction moves no listed latents
    conditions: tuple[str, ...] | None = None

    @cached_property
    def _prepared(self) -> tuple[Any, Directions]:
        return self.prepare()

    @property
    def base(self) -> Any:
        return self._prepared[0]

    @property
    def directions(self) -> Directions:
        return self._prepared[1]

    @property
    def steps(self) -> int:
        return len(self.values)

    def _row_frames(self, x: Any, v: Any) -> Any:
        """x [B, *shape], v [n] -> frames [B, columns, *shape] in column order."""
        import torch

        b = x.shape[0]
        vec = v.reshape(1, *x.shape[1:]).to(x.dtype).expand_as(x)
        counts = [int(abs(c)) for c in self.values]
        keep = set(counts)
        # both signs in one batch: rows [0, b) go along -v, rows [b, 2b) along +v
        path = guide(self.eps_at, torch.cat([x, x]), torch.cat([-vec, vec]),
                     steps=max(counts), scale=self.guidance_scale, delta=self.delta, keep=keep)
        cols = []
        for value, count in zip(self.values, counts, strict=True):
            frame = path[count]
            cols.append(frame[:b] if value < 0 else frame[b:])
        return torch.stack(cols, dim=1)

    def codes(self, index: int) -> np.ndarray:
        """float32 [rows * steps, n]: row-major x_t frames along direction ``index``."""
        frames = self._row_frames(self.base, self.directions.vectors[index])
        return frames.reshape(frames.shape[0] * frames.shape[1], -1).float().cpu().numpy()

    def clamp_steps(self) -> int:
        return max(1, round(2 * self.guidance_steps / 3))

    def comparison_codes(self, index: int, partner: int) -> np.ndarray:
        """float32 [2 * steps, n]: the first row's traversal, then the same traversal starting
        from the first base latent moved ``clamp_steps`` guidance steps along +``partner``."""
        import torch

        x0 = self.base[:1]
        n = self.clamp_steps()
        vec = self.directions.vectors[partner].reshape(1, *x0.shape[1:]).to(x0.dtype)
        shifted = guide(self.eps_at, x0, vec, steps=n, scale=self.guidance_scale,
                        delta=self.delta, keep={n})[n]
        frames = self._row_frames(torch.cat([x0, shifted]), self.directions.vectors[index])
        return frames.reshape(2 * self.steps, -1).float().cpu().numpy()

    def clamp_value(self, partner: int) -> float:
        return float(self.clamp_steps())

    def describe(self) -> dict[str, Any]:
        d = self.directions
        return {
            "kind": self.kind, "unit": self.unit, "values": list(self.values),
            "sign_convention": SIGN_CONVENTION,
            "singular_values": list(d.singular_values), "direction_method": d.method,
            "direction_iterations": d.iterations,
            "guidance": {"steps": self.guidance_steps, "scale": self.guidance_scale,
                         "delta": self.delta},
            "condition": self.condition, **self.details,
        }
