"""What each latent does, re-measured by decoding both versions on the same base codes.

No MLflow here: decoders in, signatures out. The base codes are the zero code (where a permuted
copy of a model gives exactly the same images) and ``rows - 1`` codes z ~ N(0, I) from ``seed``;
each latent is swept through ``values`` (prior std units) from each base code, for both models.

A signature has two parts per latent, averaged over the base codes:
- ``properties``: the trajectory of each measured property (x, y, log area, hue, saturation,
  brightness, contrast, roundness; :func:`lexflow.stages.evidence.measure_frames`) relative to the
  middle frame, in units of a notable change (:data:`lexflow.stages.evidence.NOTABLE`);
- ``pixels``: the mean image change relative to the middle frame (where and how pixels move).
Both are zero for a latent whose images barely change (``lexflow.stages.evidence.INACTIVE_CHANGE``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lexflow.adapters.base import Decoder
from lexflow.stages.decode import BatchDecoder
from lexflow.stages.evidence import INACTIVE_CHANGE, NOTABLE, measure_frames

_LINEAR = (("x", "x"), ("y", "y"), ("saturation", "saturation"), ("brightness", "brightness"),
           ("contrast", "contrast"), ("roundness", "shape"))


@dataclass(frozen=True)
class Signatures:
    """Per-latent signatures of one decoder.

    Attributes:
        properties: float [d, steps, 8], property trajectories in notable-change units.
        pixels: float [d, steps, C * H * W], mean pixel change in [0, 1] intensity.
        active: bool [d], whether the latent changes the images.
    """

    properties: np.ndarray
    pixels: np.ndarray
    active: np.ndarray


def base_codes(latent_dim: int, rows: int, seed: int) -> np.ndarray:
    """float32 [rows, d]: the zero code, then ``rows - 1`` draws from N(0, I)."""
    rng = np.random.default_rng(seed)
    draws = rng.standard_normal((max(rows - 1, 0), latent_dim)).astype(np.float32)
    return np.concatenate([np.zeros((1, latent_dim), np.float32), draws])


def _property_trajectory(frames: np.ndarray) -> np.ndarray:
    """frames [rows, steps, C, H, W] -> [steps, 8] mean trajectories relative to the middle."""
    rows, steps = frames.shape[:2]
    p = measure_frames(frames.reshape(rows * steps, *frames.shape[2:]))
    mid = steps // 2
    out = []
    for key, notable in _LINEAR:
        t = p[key].reshape(rows, steps)
        out.append(((t - t[:, mid : mid + 1]) / NOTABLE[notable][0]).mean(axis=0))
    area = np.log(p["area"] + 1e-4).reshape(rows, steps)
    out.append(((area - area[:, mid : mid + 1]) / NOTABLE["scale"][0]).mean(axis=0))
    hue = p["hue"].reshape(rows, steps)
    coloured = (p["saturation"].reshape(rows, steps) >= 0.2).all(axis=1, keepdims=True)
    dh = ((hue - hue[:, mid : mid + 1] + 0.5) % 1.0 - 0.5) * coloured
    out.append((dh / NOTABLE["hue"][0]).mean(axis=0))
    return np.stack(out, axis=1)


def signatures(decoder: Decoder, base: np.ndarray, values: tuple[float, ...], *,
               output_range: tuple[float, float] | None = None, batch_size: int = 256
               ) -> Signatures:
    """Decode every latent's traversal from each base code and summarise what it does."""
    rows, d = base.shape
    steps = len(values)
    batch = BatchDecoder(decoder, batch_size=batch_size, output_range=output_range)
    props, pixels, active = [], [], []
    sweep = np.tile(np.asarray(values, np.float32), rows)
    for i in range(d):
        z = np.repeat(base, steps, axis=0)
        z[:, i] = sweep
        images = batch.decode(z)
        frames = images.reshape(rows, steps, *images.shape[1:])
        total = float(np.abs(np.diff(frames, axis=1)).mean(axis=(0, 2, 3, 4)).sum())
        moving = total >= INACTIVE_CHANGE
        mid = steps // 2
        change = (frames - frames[:, mid : mid + 1]).mean(axis=0).reshape(steps, -1)
        traj = _property_trajectory(frames)
        props.append(traj if moving else np.zeros_like(traj))
        pixels.append(change if moving else np.zeros_like(change))
        active.append(moving)
    return Signatures(np.stack(props), np.stack(pixels), np.asarray(active, bool))
