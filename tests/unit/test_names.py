"""lexflow.names: tag and artifact names."""

from __future__ import annotations

from lexflow import names


def test_latent_tag_padding() -> None:
    assert names.latent_tag(3, 10) == "lexflow.latent.03"
    assert names.latent_tag(117, 512) == "lexflow.latent.117"
    assert names.latent_certainty_tag(3, 512) == "lexflow.latent.003.certainty"
    assert names.traversal_path(5, 8) == "lexflow/traversals/latent_05.png"
