"""A CSVAE-like model for tests: the BlobDecoder with a label subspace w = (z2, z3) (size, hue),
and an encoder that reads x position, y position and size back from the image (hue is not read).

Labelled data: blobs decoded from z ~ N(0, I), label "large" = z2 > 0.
"""

from __future__ import annotations

import math

import torch

from models.blob import BlobDecoder


class BlobCSVAE(BlobDecoder):
    label_subspace = (2, 3)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        s = self.size
        mass = x.amax(dim=1)  # [N, H, W], the blob's mask times its brightest channel
        total = mass.sum(dim=(1, 2)).clamp_min(1e-6)
        coords = (torch.arange(s, dtype=torch.float32) + 0.5) / s
        cx = (mass.sum(dim=1) * coords).sum(dim=1) / total
        cy = (mass.sum(dim=2) * coords).sum(dim=1) / total
        radius = torch.sqrt(total / (s * s) / math.pi).clamp_min(1e-3)
        t2 = (torch.log(radius / 0.12) / 0.7).clamp(-0.99, 0.99)
        z = torch.zeros(x.shape[0], self.latent_dim)
        z[:, 0] = 3 * torch.atanh(((cx - 0.5) / 0.3).clamp(-0.99, 0.99))
        z[:, 1] = 3 * torch.atanh(((cy - 0.5) / 0.3).clamp(-0.99, 0.99))
        z[:, 2] = 3 * torch.atanh(t2)
        return z
