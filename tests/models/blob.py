"""Tiny decoders with known latent meanings, built in the tests (no training, no downloads).

BlobDecoder draws a soft coloured blob: z0 moves it left->right, z1 top->bottom, z2 grows it,
z3 shifts its hue, and the remaining latents do nothing (inactive).
"""

from __future__ import annotations

from typing import Any

import torch


class BlobDecoder(torch.nn.Module):
    def __init__(self, latent_dim: int = 5, size: int = 32, *, out_range: str = "01",
                 nan_above: float | None = None) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.size = size
        self.out_range = out_range
        self.nan_above = nan_above
        self.scale = torch.nn.Parameter(torch.ones(()), requires_grad=False)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        n, s = z.shape[0], self.size
        t = torch.tanh(z / 3.0)
        cx = 0.5 + 0.3 * t[:, 0]
        cy = 0.5 + 0.3 * t[:, 1]
        radius = 0.12 * torch.exp(0.35 * t[:, 2] * 3.0 / 3.0 * 2)
        hue = (0.15 * z[:, 3]) % 1.0 if self.latent_dim > 3 else torch.zeros(n)
        coords = (torch.arange(s, dtype=torch.float32) + 0.5) / s
        yy, xx = torch.meshgrid(coords, coords, indexing="ij")
        d2 = (xx[None] - cx[:, None, None]) ** 2 + (yy[None] - cy[:, None, None]) ** 2
        mask = torch.sigmoid((radius[:, None, None] ** 2 - d2) * 400.0)
        k = torch.arange(3, dtype=torch.float32)[None]
        rgb = 0.5 + 0.5 * torch.cos(2 * torch.pi * (hue[:, None] - k / 3.0))  # [n, 3]
        img = mask[:, None] * rgb[:, :, None, None] * self.scale
        if self.nan_above is not None:
            bad = (z.abs() > self.nan_above).any(dim=1)
            img[bad] = float("nan")
        if self.out_range == "-11":
            img = img * 2 - 1
        return img

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(z)


class NoDecode(torch.nn.Module):
    latent_dim = 3

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z


class WrongShape(BlobDecoder):
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return super().decode(z).permute(0, 2, 3, 1)  # channels-last: breaks the contract


def traverse(model: torch.nn.Module, config: Any, index: int) -> Any:
    """The decoded frames [rows, steps, C, H, W] of latent ``index`` of ``model``."""
    from lexflow.adapters.pytorch_vae import PyTorchVAEAdapter
    from lexflow.stages.decode import BatchDecoder, decode_traversals
    from lexflow.stages.plan import TraversalPlan

    adapter = PyTorchVAEAdapter(model, device="cpu")
    plan = TraversalPlan.from_config(adapter.latent_dim, config)
    batch = BatchDecoder(adapter, batch_size=config.batch_size)
    (t,) = decode_traversals(batch, plan.codes, [index], plan.rows, plan.values)
    return t.frames


