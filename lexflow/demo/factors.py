"""Does the ``measure`` explainer name the factor each demo latent tracks?

The factor a latent tracks comes from the data's known factors (encode generated images, correlate
posterior means with the factors: :func:`lexflow.demo.train.factor_map`). The explanation comes
from lexflow's own stages (decode, evidence, measure explainer, uncertainty), without MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass

# Words of the measure explainer's phrases -> the data factor they name.
FACTOR_WORDS = {
    "x": ("left to right", "right to left"),
    "y": ("top to bottom", "bottom to top"),
    "scale": ("larger", "smaller"),
    "rotation": ("rotates",),
    "colour": ("colour",),
    "shape": ("shape",),
}


def named_factors(explanation: str | None) -> list[str]:
    text = (explanation or "").lower()
    return [f for f, words in FACTOR_WORDS.items() if any(w in text for w in words)]


@dataclass(frozen=True)
class FactorRow:
    latent: int
    active: bool  # the encoder uses it (posterior-mean variance above the collapse threshold)
    visible: bool  # its traversal changes the decoded images (lexflow's evidence)
    true_factor: str
    factor_score: float
    explanation: str | None
    certainty: float
    correct: bool


def evaluate(n: int = 4000, seed: int = 123) -> list[FactorRow]:
    """One row per latent of the shipped demo model."""
    from lexflow.adapters.base import ModelInfo
    from lexflow.adapters.pytorch_vae import PyTorchVAEAdapter
    from lexflow.config import ExplainConfig
    from lexflow.demo import shapes
    from lexflow.demo.train import factor_map, load_or_train
    from lexflow.engine import explain_decoder
    from lexflow.explainers import get_explainer

    model = load_or_train(progress=False)
    fmap = factor_map(model, shapes.generate(n, seed=seed))
    decoder = PyTorchVAEAdapter(model, device="cpu")
    info = ModelInfo(("pytorch",), {"output_range": [0, 1], "bias": "disentanglement"})
    result = explain_decoder(decoder, info, ExplainConfig(), get_explainer("measure"))
    rows = []
    for r in result.latents:
        i = r.index
        visible = r.status != "inactive"
        active = bool(fmap[i]["active"])
        explanation = r.explanation
        rows.append(
            FactorRow(
                latent=i,
                active=active,
                visible=visible,
                true_factor=fmap[i]["factor"],
                factor_score=fmap[i]["score"],
                explanation=explanation,
                certainty=r.certainty,
                correct=bool(active and fmap[i]["factor"] in named_factors(explanation)),
            )
        )
    return rows


def accuracy(rows: list[FactorRow]) -> float:
    """Fraction of active latents (ones the encoder uses, so they track a factor at all) whose
    explanation names the tracked factor. A collapsed latent has no factor to name; the check for
    those is that they get no explanation (:func:`collapsed_abstained`)."""
    active = [r for r in rows if r.active]
    return sum(r.correct for r in active) / len(active) if active else 0.0


def collapsed_abstained(rows: list[FactorRow]) -> tuple[int, int]:
    """(collapsed latents reported 'No clear explanation', collapsed latents)."""
    collapsed = [r for r in rows if not r.active]
    return sum(r.explanation is None for r in collapsed), len(collapsed)
