"""A BlobDecoder that counts (and can slow down) its work, so crash tests can count decoded
traversals across a SIGKILL."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from models.blob import BlobDecoder


class CountingBlob(BlobDecoder):
    """BlobDecoder that appends one line per decode call to the file named by
    ``LEXFLOW_TEST_DECODE_LOG``: the number of codes, then the latent each ``steps``-long row
    sweeps (``20 3,3,3,3`` is the traversal of latent 3 with 4 rows of 5 steps), after sleeping
    ``LEXFLOW_TEST_DECODE_DELAY`` seconds."""

    def __init__(self, latent_dim: int = 8, steps: int = 5) -> None:
        super().__init__(latent_dim=latent_dim)
        self.steps = steps

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        delay = float(os.environ.get("LEXFLOW_TEST_DECODE_DELAY", "0"))
        if delay:
            time.sleep(delay)
        out = super().decode(z)
        path = os.environ.get("LEXFLOW_TEST_DECODE_LOG")
        if path:
            rows = []
            for r in range(0, z.shape[0], self.steps):
                swept = torch.nonzero(z[r : r + self.steps].std(dim=0) > 0).flatten().tolist()
                rows.append(str(swept[0]) if len(swept) == 1 else "?")
            with open(path, "a", encoding="utf-8") as f:
                f.write(f"{z.shape[0]} {','.join(rows)}\n")
        return out


def traversals_in(log: Path, rows: int, steps: int) -> list[int]:
    """The latents whose full traversal a CountingBlob decoded (one decode call per latent when
    batch_size = rows * steps), in order."""
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        n, _, swept = line.partition(" ")
        latents = swept.split(",")
        if int(n) == rows * steps and len(set(latents)) == 1 and latents[0] != "?":
            out.append(int(latents[0]))
    return out


