"""Tiny diffusers models built in the tests (no downloads): a DDIM pipeline over a two-level U-Net
with attention, small enough for CPU; and the few-step settings that keep runs fast."""

from __future__ import annotations

from typing import Any

import diffusers
import torch

# Few steps keep CPU time small; the paper uses 100 DDIM steps and 16 guidance steps.
FAST = {"ddim_steps": 4, "guidance_steps": 4, "guidance_scale": 20.0, "power_iterations": 6}


def tiny_unet(size: int = 16, mid: bool = True) -> Any:
    torch.manual_seed(0)
    kw: dict[str, Any] = {} if mid else {"mid_block_type": None}
    return diffusers.UNet2DModel(
        sample_size=size, in_channels=3, out_channels=3, layers_per_block=1,
        block_out_channels=(8, 16), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4, attention_head_dim=4,
        **kw)


def tiny_ddim(size: int = 16, mid: bool = True) -> Any:
    return diffusers.DDIMPipeline(unet=tiny_unet(size, mid), scheduler=diffusers.DDIMScheduler())


