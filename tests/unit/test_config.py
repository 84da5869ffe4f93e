"""lexflow.config: options, latent selection, frame values."""

from __future__ import annotations

import pytest

from lexflow.config import ExplainConfig, parse_explainer_options, parse_latents
from lexflow.errors import ConfigError


def test_parse_latents_forms() -> None:
    assert parse_latents("all") is None
    assert parse_latents("5,0,3") == (0, 3, 5)
    assert parse_latents("2-4,7") == (2, 3, 4, 7)
    with pytest.raises(ConfigError, match="could not read 'x'"):
        parse_latents("1,x")
    with pytest.raises(ConfigError, match="start at 0"):
        parse_latents([-1])


def test_explainer_options_are_read_once_for_the_cli_and_the_quality_benchmark() -> None:
    """``-o key=value``: lexflow explain (a click error, exit 2) and benchmarks/quality.py read
    them with the same function."""
    from click.testing import CliRunner

    from lexflow.cli import cli

    assert parse_explainer_options([" temperature = 0.5", "base_url=http://h:1/v1?a=b"]) == {
        "temperature": "0.5", "base_url": "http://h:1/v1?a=b"}
    for bad in ("temperature", "=1"):
        with pytest.raises(ConfigError, match=f"expected KEY=VALUE, got '{bad}'"):
            parse_explainer_options([bad])
    res = CliRunner().invoke(cli, ["explain", "models:/x/1", "-o", "temperature"])
    assert res.exit_code == 2
    assert "Invalid value for --explainer-option: expected KEY=VALUE, got 'temperature'" in res.output


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
