"""An example third-party explainer, registered through the ``lexflow.explainers`` entry point.

``lexflow explain models:/vae/3 --explainer terse`` answers with the name of the property that
moves most in each base row ("x position", "size"), for dashboards that want a short vocabulary.
It shows the whole contract: subclass Explainer, implement explain(), declare the entry point.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lexflow.explainers.base import Explainer, ExplainRequest, ExplainResponse

WORDS = {
    "x": "x position", "y": "y position", "scale": "size", "rotation": "orientation",
    "hue": "colour", "saturation": "saturation", "brightness": "brightness",
    "contrast": "contrast", "shape": "shape",
}


class TerseExplainer(Explainer):
    scheme = "terse"
    is_mllm = False

    @classmethod
    def from_uri(cls, target: str | None, options: Mapping[str, Any]) -> TerseExplainer:
        return cls("terse")

    def explain(self, request: ExplainRequest) -> ExplainResponse:
        props = request.evidence.properties
        answers = []
        for r in range(len(props[0].per_row)):
            best = max(props, key=lambda p: abs(p.row_scores()[r]))
            answers.append(WORDS[best.name] if abs(best.row_scores()[r]) >= 1.0 else "")
        return ExplainResponse(request.index, tuple(answers))
