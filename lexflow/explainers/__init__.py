"""Explainer backends, named by URI: ``measure``, ``openai:/gpt-4o``, ``anthropic:/<model>``...

Every backend (built-in or third-party) is registered in the ``lexflow.explainers`` entry-point
group under its scheme and found with :func:`get_explainer`.
"""

from lexflow.explainers.base import (
    Explainer,
    ExplainRequest,
    ExplainResponse,
    available_explainers,
    get_explainer,
)

__all__ = [
    "ExplainRequest",
    "ExplainResponse",
    "Explainer",
    "available_explainers",
    "get_explainer",
]
