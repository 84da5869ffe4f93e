"""lexflow.stages.decode (and the PyTorch adapter contract): batches, checks, pixel range."""

from __future__ import annotations

import numpy as np
import pytest
from models.blob import BlobDecoder, NoDecode, WrongShape

from lexflow.adapters.pytorch_vae import PyTorchVAEAdapter
from lexflow.errors import DecodeError, ModelContractError
from lexflow.stages.decode import BatchDecoder, detect_range


def test_decode_rejects_wrong_shape_nan_and_missing_contract() -> None:
    with pytest.raises(ModelContractError, match=r"32 channels \(shape \(10, 32, 32, 3\)\).*\[N, C, H, W\]"):
        BatchDecoder(PyTorchVAEAdapter(WrongShape(), device="cpu")).decode(np.zeros((10, 5), np.float32))
    nan = BatchDecoder(PyTorchVAEAdapter(BlobDecoder(nan_above=2.0), device="cpu"))
    with pytest.raises(DecodeError, match="NaN or Inf for 1 of 2 codes"):
        nan.decode(np.array([[0, 0, 0, 0, 0], [3, 0, 0, 0, 0]], np.float32))
    with pytest.raises(ModelContractError, match="no decode"):
        PyTorchVAEAdapter(NoDecode(), device="cpu")
    model = BlobDecoder()
    model.latent_dim = "5"  # type: ignore[assignment]
    with pytest.raises(ModelContractError, match="integer attribute latent_dim"):
        PyTorchVAEAdapter(model, device="cpu")


def test_pixel_range_detected_and_normalised() -> None:
    assert detect_range(np.array([-1.0, 0.5])) == (-1.0, 1.0)
    assert detect_range(np.array([0.0, 200.0])) == (0.0, 255.0)
    assert detect_range(np.array([0.0, 1.0])) == (0.0, 1.0)
    z = np.zeros((3, 5), np.float32)
    a = BatchDecoder(PyTorchVAEAdapter(BlobDecoder(), device="cpu")).decode(z)
    b = BatchDecoder(PyTorchVAEAdapter(BlobDecoder(out_range="-11"), device="cpu")).decode(z)
    assert b.min() >= 0 and np.allclose(a, b, atol=1e-5)


def test_batched_decode_matches_one_at_a_time() -> None:
    adapter = PyTorchVAEAdapter(BlobDecoder(), device="cpu")
    z = np.random.default_rng(0).standard_normal((37, 5)).astype(np.float32)
    together = BatchDecoder(adapter, batch_size=16).decode(z)
    single = np.concatenate([BatchDecoder(adapter, batch_size=1).decode(z[i : i + 1]) for i in range(37)])
    assert np.allclose(together, single, atol=1e-6)
