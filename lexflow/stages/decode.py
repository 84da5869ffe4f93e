"""Decode: run latent codes through the decoder in batches, check and normalise what comes back.

Every image leaving this stage is float32 [C, H, W] with C in {1, 3} and values in [0, 1].
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from lexflow.adapters.base import Decoder
from lexflow.errors import DecodeError, ModelContractError


@dataclass(frozen=True)
class Traversal:
    """One latent's decoded traversal.

    Attributes:
        index: the latent index.
        values: frame values in prior std units, increasing (columns).
        frames: float32 [rows, steps, C, H, W] in [0, 1].
        comparison: float32 [2, steps, C, H, W] in [0, 1] or None: the first row's traversal and
            the same traversal with ``partner`` clamped to ``partner_value``.
        partner: the clamped latent of the comparison row, or None.
        partner_value: its value in prior std units, or None.
    """

    index: int
    values: tuple[float, ...]
    frames: np.ndarray
    comparison: np.ndarray | None = None
    partner: int | None = None
    partner_value: float | None = None


def detect_range(raw: np.ndarray) -> tuple[float, float]:
    """Guess the decoder's pixel range from a batch: [-1, 1], [0, 255] or [0, 1]."""
    lo, hi = float(raw.min()), float(raw.max())
    if hi > 2.0:
        return (0.0, 255.0)
    if lo < -0.05:
        return (-1.0, 1.0)
    return (0.0, 1.0)


class BatchDecoder:
    """Decodes codes in batches of ``batch_size`` with shape/finite checks and range normalisation.

    The pixel range is read from the model metadata (``output_range``) or detected on the first
    batch and then kept fixed, so all frames of a run are normalised the same way.
    """

    def __init__(
        self,
        decoder: Decoder,
        *,
        batch_size: int = 256,
        output_range: tuple[float, float] | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.decoder = decoder
        self.batch_size = batch_size
        self.output_range = output_range
        self.on_batch = on_batch
        self.image_shape: tuple[int, int, int] | None = None
        self.decode_seconds = 0.0  # wall time in the decoder's decode, every batch
        # CPU time of the thread that called it meanwhile: the decoder's own, whatever other
        # threads of this process (the evidence, an explainer's client, drawing) do beside it
        self.decode_cpu_seconds = 0.0

    def _check(self, raw: np.ndarray, n: int) -> np.ndarray:
        if raw.ndim != 4 or raw.shape[0] != n:
            raise ModelContractError(
                f"decode() must return images [N, C, H, W] for N={n} codes; it returned shape "
                f"{tuple(raw.shape)}. Channels-last or flattened outputs must be reshaped in "
                "the model."
            )
        if raw.shape[1] not in (1, 3, 4):
            raise ModelContractError(
                f"decode() returned {raw.shape[1]} channels (shape {tuple(raw.shape)}); expected "
                "1 (grey), 3 (RGB) or 4 (RGBA) channels in dimension 1: [N, C, H, W]."
            )
        if self.image_shape is None:
            self.image_shape = (int(raw.shape[1]), int(raw.shape[2]), int(raw.shape[3]))
        elif tuple(raw.shape[1:]) != self.image_shape:
            raise ModelContractError(
                f"decode() changed image shape between batches: {self.image_shape} then "
                f"{tuple(raw.shape[1:])}."
            )
        # One reduction instead of a full boolean mask; a sum can only be non-finite if some
        # value is (or the images are astronomically large, which the full check then sorts out).
        if not np.isfinite(raw.sum(dtype=np.float64)) and not np.isfinite(raw).all():
            bad = int((~np.isfinite(raw)).reshape(n, -1).any(axis=1).sum())
            raise DecodeError(
                f"decode() returned NaN or Inf for {bad} of {n} codes. The decoder is unstable "
                "for these latent values; try a smaller span (the traversal goes to +/-span "
                "prior std) or check the model."
            )
        return raw

    def cpu_share(self) -> float | None:
        """The share of the decoder's wall time that the thread calling it spent on a CPU (all
        batches so far; None before any): about 1 for a decoder that computes on the CPU (torch's
        and onnxruntime's CPU kernels run on the calling thread too, beside their pool), near 0
        for one that waits on a GPU or a server. The calling thread's own CPU time, not the
        process's: work on other threads meanwhile (the evidence beside a group decoded ahead,
        an explainer opening its client) is not the decoder's, and would make a decoder that
        waits read as busy."""
        if self.decode_seconds <= 0:
            return None
        return self.decode_cpu_seconds / self.decode_seconds

    def decode(self, z: np.ndarray) -> np.ndarray:
        """float32 [N, d] -> float32 [N, C, H, W] in [0, 1] (alpha dropped)."""
        outs = []
        for start in range(0, len(z), self.batch_size):
            chunk = z[start : start + self.batch_size]
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                raw = self.decoder.decode(chunk)
            except (ModelContractError, DecodeError):
                raise
            except SystemExit as exc:  # model code never decides lexflow's exit code
                raise DecodeError(
                    f"The decoder called sys.exit({exc.code!r}) while decoding; model code may not "
                    "end lexflow. Fix the model's decode method."
                ) from exc
            except Exception as exc:  # user model code can raise anything
                raise DecodeError(
                    f"The decoder raised {type(exc).__name__} on a batch of {len(chunk)} codes "
                    f"of size {z.shape[1]}: {exc}"
                ) from exc
            finally:
                self.decode_seconds += time.perf_counter() - wall
                self.decode_cpu_seconds += time.thread_time() - cpu
            raw = self._check(np.asarray(raw, dtype=np.float32), len(chunk))
            if self.output_range is None:
                self.output_range = detect_range(raw)
            lo, hi = self.output_range
            img = raw[:, :3] if raw.shape[1] == 4 else raw
            if (lo, hi) != (0.0, 1.0):
                img = (img - lo) / (hi - lo)
            # Adapters hand over arrays they own, so normalise in place.
            outs.append(np.clip(img, 0.0, 1.0, out=img))
            if self.on_batch:
                self.on_batch(len(chunk))
        return outs[0] if len(outs) == 1 else np.concatenate(outs, axis=0)


def decode_traversals(
    batch: BatchDecoder, plan_codes: Callable[[int], np.ndarray], indices: list[int],
    rows: int, values: tuple[float, ...],
) -> Iterator[Traversal]:
    """Decode the traversal of each latent in ``indices``, grouping latents to fill batches.

    Yields one :class:`Traversal` per latent, in order, holding only one group in memory.
    """
    for group in decode_groups(batch, plan_codes, indices, rows, values):
        yield from group


def decode_groups(
    batch: BatchDecoder, plan_codes: Callable[[int], np.ndarray], indices: list[int],
    rows: int, values: tuple[float, ...],
) -> Iterator[list[Traversal]]:
    """:func:`decode_traversals`, one decode group (the latents of one batch) at a time."""
    steps = len(values)
    per_latent = rows * steps
    group = max(1, batch.batch_size // per_latent)
    for g in range(0, len(indices), group):
        chunk = indices[g : g + group]
        z = np.concatenate([plan_codes(i) for i in chunk], axis=0)
        images = batch.decode(z)
        yield [Traversal(i, values, images[k * per_latent : (k + 1) * per_latent].reshape(
                   rows, steps, *images.shape[1:])) for k, i in enumerate(chunk)]
