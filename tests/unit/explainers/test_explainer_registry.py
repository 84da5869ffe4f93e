"""lexflow.explainers.base: explainers by URI."""

from __future__ import annotations

import pytest

from lexflow.errors import ConfigError
from lexflow.explainers import get_explainer


def test_unknown_explainer_lists_available_and_suggests() -> None:
    with pytest.raises(ConfigError, match=r"Unknown explainer 'mesure'.*measure.*Did you mean 'measure'"):
        get_explainer("mesure")
    with pytest.raises(ConfigError, match="names no model"):
        get_explainer("openai:/")
