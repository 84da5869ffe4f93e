"""Read-back: does the model's own encoder see the value a traversal set?

A decoder answers every code, including values three prior standard deviations out along a latent
the encoder never uses; there it may still shift the picture a little (a side effect, not a
factor). The explainer describes that shift faithfully, and its answers agree, so agreement alone
calls such a latent explained. For a model with an encoder (a VAE), lexflow therefore encodes each
decoded traversal frame again and compares: the *read-back* of latent ``i`` is the correlation
(Pearson, clipped at 0) between the value the traversal set and latent ``i``'s posterior mean of
the decoded frame, over every frame of the grid. A latent the model uses comes back near 1; one
the decoder responds to but the encoder ignores comes back near 0.

The reported certainty of a latent is then its answers' agreement times its read-back
(:func:`lexflow.uncertainty.with_readback`). The frames are the ones the grid shows, so this is
one encoder pass over images already decoded. Models without an encoder, and items that are not
single latents (groups, CSVAE attributes, diffusion directions), have no read-back (None).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lexflow.adapters.base import Decoder, EncodingDecoder
from lexflow.stages.decode import BatchDecoder, Traversal

READBACK_MODES = ("auto", "off")


def correlation(wanted: np.ndarray, got: np.ndarray) -> float:
    """Pearson correlation of the set values and the read-back ones, clipped to [0, 1]; 0 when
    either does not vary."""
    wanted = np.asarray(wanted, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if wanted.std() == 0 or got.std() == 0:
        return 0.0
    r = float(np.corrcoef(wanted, got)[0, 1])
    return max(0.0, r) if np.isfinite(r) else 0.0


class ReadBack:
    """Reads back the traversals of one run through the decoder's encoder.

    Built by :meth:`for_run`, which says None when there is nothing to read back with.
    """

    def __init__(self, decoder: EncodingDecoder, values: Sequence[float]) -> None:
        self.decoder = decoder
        self.values = np.asarray(values, dtype=np.float64)

    @classmethod
    def for_run(cls, decoder: Decoder, mode: str, kind: str,
                values: Sequence[float]) -> ReadBack | None:
        """A reader when ``mode`` is ``auto``, the items are single latents and the decoder has
        an encoder (:class:`lexflow.adapters.base.EncodingDecoder`); else None."""
        if mode != "auto" or kind != "latent" or not (isinstance(decoder, EncodingDecoder)
                                                      and decoder.has_encoder):
            return None
        return cls(decoder, values)

    def group(self, traversals: Sequence[Traversal], batch: BatchDecoder) -> dict[int, float]:
        """Latent index -> read-back of each traversal (frames [rows, steps, C, H, W] in [0, 1],
        decoded by ``batch``), with one encoder call for the group. Frames go back to the
        decoder's range first; a decoder with an alpha channel (dropped from the frames) gets
        none (an empty dict)."""
        if not traversals or (batch.image_shape or (0,))[0] == 4:
            return {}
        lo, hi = batch.output_range or (0.0, 1.0)
        shape = traversals[0].frames.shape[2:]
        images = np.concatenate([t.frames.reshape(-1, *shape) for t in traversals])
        if (lo, hi) != (0.0, 1.0):
            images = images * np.float32(hi - lo) + np.float32(lo)
        means = self.decoder.encode(images)
        out: dict[int, float] = {}
        start = 0
        for t in traversals:
            rows = t.frames.shape[0]
            got = means[start : start + rows * len(self.values), t.index]
            out[t.index] = correlation(np.tile(self.values, rows), got)
            start += rows * len(self.values)
        return out
