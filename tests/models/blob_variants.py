"""Copies of the tests' BlobDecoder for `lexflow diff` (tests/test_diff.py).

PermutedBlob: the same decoder with its latents in another order (latent ``perm[k]`` of the copy
does what latent ``k`` of BlobDecoder does). ChangedBlob: a "retrained" BlobDecoder(5) whose
z0 still moves the blob left->right, z1 moves it bottom->top (reversed), z2 grows it and now
also moves it right (changed), z3 no longer changes anything (its hue meaning is lost) and z4,
inactive before, now saturates its colour (new).
"""

from __future__ import annotations

import torch

from models.blob import BlobDecoder


class PermutedBlob(BlobDecoder):
    def __init__(self, perm: list[int], size: int = 32) -> None:
        super().__init__(len(perm), size)
        self.perm = list(perm)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        # original latent k reads the copy's latent perm[k]
        return super().decode(z[:, self.perm])


class ChangedBlob(BlobDecoder):
    def __init__(self, size: int = 32) -> None:
        super().__init__(5, size)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        zero = torch.zeros_like(z[:, 0])
        # z2 now grows the blob and moves it right as it does; nothing reads z3 any more
        moved = torch.stack([z[:, 0] + z[:, 2], -z[:, 1], z[:, 2], zero, zero], dim=1)
        img = super().decode(moved)
        # z4 washes the colour out (low) or saturates it (high)
        sat = 0.5 + 0.5 * torch.tanh(z[:, 4] / 3.0) / 0.7616
        grey = img.mean(dim=1, keepdim=True)
        return grey + sat[:, None, None, None] * (img - grey)
