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
    active: bool
    true_factor: str
    factor_score: float
    explanation: str | None
    certainty: float
    correct: bool


def evaluate(n: int = 4000, seed: int = 123) -> list[FactorRow]:
    """One row per latent of the shipped demo model."""
    from lexflow.adapters.pytorch_vae import PyTorchVAEAdapter
    from lexflow.config import ExplainConfig
    from lexflow.demo import shapes
    from lexflow.demo.train import factor_map, load_or_train
    from lexflow.explainers import get_explainer
    from lexflow.pipeline import measure_latents, run_explainer
    from lexflow.uncertainty import consensus

    model = load_or_train(progress=False)
    fmap = factor_map(model, shapes.generate(n, seed=seed))
    config = ExplainConfig()
    decoder = PyTorchVAEAdapter(model, device="cpu")
    d = decoder.latent_dim
    indices = tuple(range(d))
    measured, _, values = measure_latents(
        decoder, config, indices, bias="disentanglement", output_range=(0.0, 1.0), progress=False
    )
    responses = run_explainer(
        get_explainer("measure"), measured, values, d, config, "disentanglement", None, None, progress=False
    )
    rows = []
    for i in indices:
        active = measured[i].evidence.active
        c = consensus(responses[i].answers, threshold=config.threshold) if active else None
        explanation = c.explanation if c else None
        rows.append(
            FactorRow(
                latent=i,
                active=active,
                true_factor=fmap[i]["factor"],
                factor_score=fmap[i]["score"],
                explanation=explanation,
                certainty=c.certainty if c else 0.0,
                correct=bool(active and fmap[i]["factor"] in named_factors(explanation)),
            )
        )
    return rows


def accuracy(rows: list[FactorRow]) -> float:
    active = [r for r in rows if r.active]
    return sum(r.correct for r in active) / len(active) if active else 0.0
