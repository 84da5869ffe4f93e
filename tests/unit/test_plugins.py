"""Explainers are found by name through the entry-point group, built-ins and third-party alike."""

from __future__ import annotations

import numpy as np
from models.blob import BlobDecoder

from lexflow.adapters.pytorch_vae import PyTorchVAEAdapter
from lexflow.config import ExplainConfig
from lexflow.engine import explain_measured, latent_prepared, measure_latents
from lexflow.explainers import available_explainers, get_explainer


def test_third_party_explainer_plugs_in_through_entry_point() -> None:
    assert {"measure", "terse"} <= set(available_explainers())
    decoder = PyTorchVAEAdapter(BlobDecoder(), device="cpu")
    config = ExplainConfig(rows=3, latents=(0, 2))
    measured, out_range, values = measure_latents(
        decoder, config, (0, 2), bias="disentanglement", output_range=None, progress=False)
    assert out_range == (0.0, 1.0)
    responses = explain_measured(get_explainer("terse"), measured,
                                 latent_prepared(decoder.latent_dim, config), config)
    assert set(responses[0].answers) == {"x position"}
    assert set(responses[2].answers) == {"size"}
    # the comparison row was decoded with another active latent clamped
    assert measured[0].partner == 2 and measured[0].comparison is not None
    assert np.isclose(measured[0].comparison.properties[0].score, measured[0].evidence.properties[0].score,
                      rtol=0.5)
