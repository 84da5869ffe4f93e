"""lexflow.config: options, latent selection, frame values."""

from __future__ import annotations

import pytest

from lexflow.config import ExplainConfig, parse_latents
from lexflow.errors import ConfigError


def test_parse_latents_forms() -> None:
    assert parse_latents("all") is None
    assert parse_latents("5,0,3") == (0, 3, 5)
    assert parse_latents("2-4,7") == (2, 3, 4, 7)
    with pytest.raises(ConfigError, match="could not read 'x'"):
        parse_latents("1,x")
    with pytest.raises(ConfigError, match="start at 0"):
        parse_latents([-1])


def test_config_collects_every_problem() -> None:
    with pytest.raises(ConfigError) as err:
        ExplainConfig(steps=1, threshold=2.0, bias="disentangle", device="tpu")
    msg = str(err.value)
    assert "steps must be an integer >= 2" in msg and "got 1" in msg
    assert "threshold must be between 0 and 1; got 2.0" in msg
    assert "Did you mean 'disentanglement'?" in msg
    assert "device must be one of" in msg


def test_latents_out_of_range_names_the_model_size() -> None:
    with pytest.raises(ConfigError, match=r"latents \[99\] out of range: this model has 10 latents"):
        ExplainConfig(latents=(0, 99)).latent_indices(10)


def test_frame_values_increase_from_minus_to_plus_span() -> None:
    assert ExplainConfig(steps=5, span=3.0).frame_values() == [-3.0, -1.5, 0.0, 1.5, 3.0]
