"""The encoder's read-back (lexflow.stages.readback): a latent the decoder paints but the encoder
ignores is not reported as explained, however well the answers agree; models without an encoder,
and ``readback=off``, keep the answers' agreement as the certainty."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lexflow.adapters.base import ModelInfo  # noqa: E402
from lexflow.adapters.pytorch_vae import PyTorchVAEAdapter  # noqa: E402
from lexflow.config import ExplainConfig  # noqa: E402
from lexflow.engine import explain_decoder  # noqa: E402
from lexflow.errors import ConfigError, ModelContractError  # noqa: E402
from lexflow.explainers.base import Explainer, ExplainRequest, ExplainResponse  # noqa: E402
from lexflow.stages.readback import correlation  # noqa: E402


class SideEffectVAE(torch.nn.Module):
    """Two latents, both painted by the decoder (latent 0 moves a square left to right, latent 1
    tints the whole image), in the range [-1, 1]; the encoder reads back latent 0 only (from the
    square's position) and answers 0 for latent 1, the side effect it ignores."""

    latent_dim = 2
    size = 16

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[float, float]] = []

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        n, s = len(z), self.size
        img = torch.full((n, 3, s, s), -1.0)
        left = ((torch.tanh(z[:, 0] / 2) + 1) / 2 * (s - 5)).round().long()
        for k in range(n):
            img[k, :, 6:10, left[k] : left[k] + 4] = 1.0
        img[:, 2] += (0.4 * (torch.tanh(z[:, 1]) + 1) / 2)[:, None, None]
        return img.clamp(-1.0, 1.0)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.seen.append((float(x.min()), float(x.max())))
        bright = (x[:, 0] > 0).float().sum(dim=1)  # [N, W]: the square's columns
        cols = torch.arange(x.shape[-1], dtype=torch.float32)
        centre = (bright * cols).sum(dim=1) / bright.sum(dim=1).clamp_min(1.0)
        mean = torch.stack([centre - x.shape[-1] / 2, torch.zeros(len(x))], dim=1)
        return mean, torch.zeros_like(mean)


class Agreeing(Explainer):
    """Every answer the same, so the answers' agreement is 1 for every latent."""

    scheme = "agreeing"
    is_mllm = False

    def __init__(self) -> None:
        super().__init__("agreeing")

    def explain(self, request: ExplainRequest) -> ExplainResponse:
        return ExplainResponse(request.index, ("the image changes",) * request.samples)


def _run(model: Any, **options: Any) -> Any:
    config = ExplainConfig(rows=3, samples=3, device="cpu", **options)
    return explain_decoder(PyTorchVAEAdapter(model, device="cpu"), ModelInfo(("pytorch",)),
                           config, Agreeing())


def test_a_latent_the_encoder_does_not_read_back_is_not_explained() -> None:
    model = SideEffectVAE()
    result = _run(model)
    moved, side = result.latents
    assert moved.evidence["active"] and side.evidence["active"]
    assert moved.agreement == side.agreement == 1.0
    assert moved.readback is not None and moved.readback > 0.9
    assert moved.status == "explained" and moved.certainty == pytest.approx(moved.readback)
    assert side.readback == 0.0 and side.certainty == 0.0
    assert side.status == "unclear" and side.explanation is None
    assert side.evidence["readback"] == 0.0  # kept with the evidence (the checkpoint has it)
    # The encoder saw the frames in the decoder's own range [-1, 1], not the normalised [0, 1].
    assert min(lo for lo, _ in model.seen) == -1.0
    # One encoder call per decode group, over the frames already decoded.
    assert len(model.seen) == 1


def test_readback_off_keeps_the_agreement_as_the_certainty() -> None:
    result = _run(SideEffectVAE(), readback="off")
    assert [r.status for r in result.latents] == ["explained", "explained"]
    assert [r.readback for r in result.latents] == [None, None]
    assert [r.certainty for r in result.latents] == [1.0, 1.0]


def test_a_model_without_an_encoder_has_no_readback() -> None:
    class DecoderOnly(SideEffectVAE):
        encode = None  # type: ignore[assignment]

    result = _run(DecoderOnly())
    assert [(r.readback, r.certainty, r.status) for r in result.latents] == [
        (None, 1.0, "explained"), (None, 1.0, "explained")]


def test_an_encoder_returning_a_distribution_is_read_by_its_mean() -> None:
    class Distribution(SideEffectVAE):
        def encode(self, x: torch.Tensor) -> Any:  # type: ignore[override]
            mean, _ = super().encode(x)
            return torch.distributions.Normal(mean, torch.ones_like(mean))

    moved, side = _run(Distribution()).latents
    assert moved.readback is not None and moved.readback > 0.9 and side.readback == 0.0


def test_an_encoder_that_breaks_the_contract_is_one_clear_error() -> None:
    class WrongShape(SideEffectVAE):
        def encode(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            return torch.zeros(len(x), 5)

    with pytest.raises(ModelContractError) as err:
        _run(WrongShape())
    assert "[N, 2]" in str(err.value) and "--readback off" in str(err.value)


def test_readback_reaches_the_tags_and_survives_explanations_json() -> None:
    from lexflow import names
    from lexflow.record import ExplainResult, version_tags

    result = _run(SideEffectVAE())
    tags = version_tags(result)
    assert tags[names.latent_readback_tag(0, 2)] == f"{result.latents[0].readback:.3f}"
    assert tags[names.latent_readback_tag(1, 2)] == "0.000"
    back = ExplainResult.from_dict(result.to_dict())
    assert [(r.readback, r.agreement, r.certainty) for r in back.latents] == [
        (r.readback, r.agreement, r.certainty) for r in result.latents]
    assert not any(k.endswith(".readback") for k in version_tags(_run(SideEffectVAE(),
                                                                       readback="off")))


def test_the_checkpoint_keeps_the_readback() -> None:
    from lexflow.engine import measure_latents
    from lexflow.tracking.checkpoint import evidence_from_dict

    measured, _, _ = measure_latents(PyTorchVAEAdapter(SideEffectVAE(), device="cpu"),
                                     ExplainConfig(rows=2), (0, 1), bias="disentanglement",
                                     output_range=None, progress=False)
    for m in measured.values():
        assert m.evidence.readback is not None
        assert evidence_from_dict(m.evidence.to_dict()) == m.evidence


def test_calibration_scales_certainty_by_the_readback_as_explain_does() -> None:
    from lexflow.calibration import LabelledLatent, certainties, collect
    from lexflow.uncertainty import bow_similarity

    same = ("the square moves right",) * 3
    items = [LabelledLatent("a", same, True), LabelledLatent("b", same, False, 0.25)]
    assert list(certainties(items, bow_similarity)) == pytest.approx([1.0, 0.25])
    rows = [{"id": "x", "answers": list(same), "clear": True, "readback": "0.5"},
            {"id": "y", "answers": list(same), "clear": False, "readback": 2}]
    with pytest.raises(ConfigError, match="row 2: 'readback' must be a number from 0 to 1"):
        collect(rows)
    got, _ = collect(rows[:1])
    assert got[0].readback == 0.5


def test_correlation_is_clipped_and_zero_without_variation() -> None:
    x = np.arange(5.0)
    assert correlation(x, 2 * x + 1) == pytest.approx(1.0)
    assert correlation(x, -x) == 0.0
    assert correlation(x, np.zeros(5)) == 0.0
