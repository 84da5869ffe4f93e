"""Decoders that misbehave on purpose (tests/test_faults_pipeline.py)."""

from __future__ import annotations

import os
import sys
import time

import torch

from models.blob import BlobDecoder


class ExitingDecoder(BlobDecoder):
    """Calls sys.exit(0) on its first decode: model code must never decide lexflow's exit code."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        sys.exit(0)


class SlowBlob(BlobDecoder):
    """BlobDecoder that sleeps ``LEXFLOW_TEST_DECODE_DELAY`` seconds per decode call."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        time.sleep(float(os.environ.get("LEXFLOW_TEST_DECODE_DELAY", "0")))
        return super().decode(z)
