"""The deterministic DDIM schedule (eta = 0): inversion x_0 -> x_t and sampling x_t -> x_0.

Inversion and sampling are the two directions of the same update, so sampling an inverted latent
gives the image back up to the error of evaluating eps at the neighbouring timestep. The schedule
uses the ``alphas_cumprod`` of the pipeline's scheduler and its ``prediction_type``; any scheduler
trained with a DDPM noise schedule (DDPM, DDIM, PNDM, Euler, DPM-Solver ...) works, since only its
alphas are read. The paper uses 100 steps; tests use a handful.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lexflow.errors import ConfigError, ModelContractError

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")

# (x [B, ...] float32, timestep int) -> the model's raw output for x at that timestep.
ModelFn = Callable[[Any, int], Any]


@dataclass(frozen=True)
class DDIMSchedule:
    """Timesteps and noise levels of a ``steps``-step DDIM schedule.

    Attributes:
        timesteps: ascending training timesteps tau_0 < ... < tau_{n-1} ("leading" spacing:
            0, T/n, 2T/n, ...); tau_{n-1} is the last one, "x_T".
        alphas: alpha-bar (cumulative product of 1 - beta) at each timestep.
        prediction_type: what the model predicts: epsilon, v_prediction or sample.
        train_timesteps: T, the scheduler's num_train_timesteps.
    """

    timesteps: tuple[int, ...]
    alphas: tuple[float, ...]
    prediction_type: str
    train_timesteps: int

    @classmethod
    def from_scheduler(cls, scheduler: Any, steps: int) -> DDIMSchedule:
        name = type(scheduler).__name__
        alphas_cumprod = getattr(scheduler, "alphas_cumprod", None)
        config = getattr(scheduler, "config", {}) or {}
        total = config.get("num_train_timesteps")
        if alphas_cumprod is None or not total:
            raise ModelContractError(
                f"The pipeline's scheduler ({name}) cannot be inverted by DDIM: it has no "
                "alphas_cumprod / num_train_timesteps (a DDPM noise schedule). Save the pipeline "
                "with a DDIMScheduler or DDPMScheduler (e.g. DDIMScheduler.from_config("
                "pipe.scheduler.config)) and log it again."
            )
        prediction = config.get("prediction_type", "epsilon")
        if prediction not in PREDICTION_TYPES:
            raise ModelContractError(
                f"The scheduler ({name}) has prediction_type={prediction!r}; lexflow can invert "
                f"{', '.join(PREDICTION_TYPES)} models."
            )
        if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= int(total):
            raise ConfigError(f"ddim_steps must be an integer from 1 to {total}; got {steps!r}.")
        stride = int(total) // steps
        ts = tuple(i * stride for i in range(steps))
        ac = [float(a) for a in alphas_cumprod]
        return cls(ts, tuple(ac[t] for t in ts), str(prediction), int(total))

    def __len__(self) -> int:
        return len(self.timesteps)

    def edit_index(self, fraction: float) -> int:
        """Index of the timestep at ``fraction`` of T (1.0 -> the last timestep, x_T)."""
        if not 0.0 < fraction <= 1.0:
            raise ConfigError(f"t_fraction must be in (0, 1]; got {fraction!r}.")
        return max(1, round(fraction * len(self.timesteps))) - 1

    def eps(self, out: Any, x: Any, index: int) -> Any:
        """The noise eps from the model output ``out`` for x at timestep ``index``."""
        a = self.alphas[index]
        if self.prediction_type == "epsilon":
            return out
        if self.prediction_type == "v_prediction":
            return math.sqrt(a) * out + math.sqrt(1.0 - a) * x
        return (x - math.sqrt(a) * out) / math.sqrt(max(1.0 - a, 1e-12))


def _step(x: Any, eps: Any, a_from: float, a_to: float) -> Any:
    """Move x from noise level a_from to a_to along the deterministic DDIM path."""
    x0 = (x - math.sqrt(1.0 - a_from) * eps) / math.sqrt(a_from)
    return math.sqrt(a_to) * x0 + math.sqrt(1.0 - a_to) * eps


def invert(model: ModelFn, x0: Any, schedule: DDIMSchedule, upto: int) -> Any:
    """DDIM inversion: the clean x_0 -> x at ``schedule.timesteps[upto]``."""
    x = x0
    for i in range(upto + 1):
        a_prev = schedule.alphas[i - 1] if i > 0 else 1.0
        # eps is evaluated at the target timestep on the current x (the usual approximation).
        eps = schedule.eps(model(x, schedule.timesteps[i]), x, i)
        x = _step(x, eps, a_prev, schedule.alphas[i])
    return x


def sample(model: ModelFn, x: Any, schedule: DDIMSchedule, start: int, stop: int = -1) -> Any:
    """DDIM sampling from x at ``timesteps[start]`` down to ``timesteps[stop]`` (-1: the image)."""
    for i in range(start, stop, -1):
        eps = schedule.eps(model(x, schedule.timesteps[i]), x, i)
        a_next = schedule.alphas[i - 1] if i > 0 else 1.0
        x = _step(x, eps, schedule.alphas[i], a_next)
    return x
