"""The synthetic families generate what they document, the generalised factor map agrees with the
demo's, and the quality suite runs end to end on a tiny training budget."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from lexflow.families import FAMILY_NAMES, get_family
from lexflow.families.base import TrainSettings


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_family_generates_documented_factors(name: str) -> None:
    fam = get_family(name)
    batch = fam.generate(64, seed=3)
    assert batch.images.shape == (64, 3, 32, 32) and batch.images.dtype == np.float32
    assert batch.images.min() >= 0.0 and batch.images.max() <= 1.0
    assert set(batch.factors) == {f.name for f in fam.factors}
    for f in fam.factors:
        values = batch.factors[f.name]
        assert values.shape == (64,)
        assert f.low <= values.min() and values.max() <= f.high, f.name
        if f.kind == "categorical":
            assert values.dtype == np.int64
    again = fam.generate(64, seed=3)
    assert np.array_equal(batch.images, again.images)
    assert not np.array_equal(batch.images, fam.generate(64, seed=4).images)


def test_unknown_family_suggests() -> None:
    from lexflow.errors import ConfigError

    with pytest.raises(ConfigError, match="Did you mean 'digits'"):
        get_family("digit")


def test_shapes3d_wall_floor_and_object_colours() -> None:
    from lexflow.demo.shapes import hue_to_rgb
    from lexflow.families import shapes3d

    one = np.ones(1, np.float32)
    img = shapes3d.render(0.0 * one, one / 3, 2 * one / 3, 0.5 * one, np.array([2]), 0.0 * one)[0]
    assert np.allclose(img[:, 1, 1], 0.9 * hue_to_rgb(np.float32(1 / 3)), atol=1e-5)  # wall: green
    assert np.allclose(img[:, 30, 1], 0.75 * hue_to_rgb(np.float32(0.0)), atol=1e-5)  # floor: red
    assert np.allclose(img[:, 21, 16], hue_to_rgb(np.float32(2 / 3)), atol=1e-5)  # object: blue
    tilted = shapes3d.render(0.0 * one, one / 3, 2 * one / 3, 0.5 * one, np.array([2]), 30 * one)[0]
    # rolled counter-clockwise: the horizon rises on the right
    assert tilted[1, 12, 30] < tilted[1, 12, 1]


def test_digits_thickness_and_position() -> None:
    from lexflow.families import digits

    n = 4
    base = dict(index=np.zeros(n, np.int64), colour=np.zeros(n, np.float32))
    thick = digits.render(thickness=np.arange(n), x=np.zeros(n), y=np.zeros(n), **base)
    mass = thick.sum(axis=(1, 2, 3))
    assert np.all(np.diff(mass) > 0)  # erosion < scan < dilated < dilated twice
    moved = digits.render(thickness=np.ones(n, np.int64), x=np.array([0, 1, 0, 1.0]),
                          y=np.array([0, 0, 1, 1.0]), **base)
    cols = np.flatnonzero(moved[1].sum(axis=(0, 1)))
    assert cols.min() >= 14 - 1  # x = 1: glyph starts 14 px from the left


def test_named_factors_use_each_familys_words() -> None:
    assert get_family("dsprites").named_factors("moves the object from left to right") == ["x"]
    s3 = get_family("shapes3d")
    assert s3.named_factors("changes the floor colour from red to blue") == ["floor_hue"]
    assert s3.named_factors("changes the object's colour") == ["object_hue"]
    assert get_family("digits").named_factors("makes the strokes thicker") == ["thickness"]


def test_generic_factor_scores_match_the_demo() -> None:
    from lexflow.demo import train as demo_train
    from lexflow.families.train import factor_scores

    fam = get_family("dsprites")
    batch = fam.generate(500, seed=1)
    latent = batch.factors["x"] + 0.3 * np.cos(2 * np.pi * batch.factors["colour"])
    ours = factor_scores(latent.astype(np.float64), batch.factors, fam)
    theirs = demo_train.factor_scores(latent.astype(np.float64), batch.factors)
    assert ours == pytest.approx(theirs)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_pairs_differ_in_exactly_one_factor(name: str) -> None:
    """Family.pairs: each pair shares every value but one factor's (and the hidden values linked
    to it: a new digit is a new scan); every factor is the changed one for some pairs."""
    from dataclasses import replace

    fam = get_family(name)
    seen: list[dict[str, np.ndarray]] = []

    def keep(values: dict[str, np.ndarray]) -> np.ndarray:
        seen.append(values)
        return fam.render(values)

    first, second = replace(fam, render=keep).pairs(400, seed=5)
    assert first.shape == second.shape == (400, 3, 32, 32)
    a, b = seen
    assert set(a) == set(b) and {f.name for f in fam.factors} <= set(a)
    moved = np.stack([a[f.name] != b[f.name] for f in fam.factors])  # [factors, pairs]
    assert np.all(moved.sum(axis=0) <= 1)  # a categorical factor may be drawn to the same class
    assert np.all(moved.any(axis=1))
    hidden = set(a) - {f.name for f in fam.factors}
    names = [f.name for f in fam.factors]
    for key in hidden:  # a hidden value is drawn again only with the factor it is linked to
        (factor,) = [f for f, h in fam.linked if h == key]
        another_factor_moved = moved.any(axis=0) & ~moved[names.index(factor)]
        assert not np.any((a[key] != b[key]) & another_factor_moved)
        assert np.any(a[key] != b[key])
    # equal values give equal images; moved ones nearly always different ones (a digit's x moves
    # by whole pixels, so a small change of x may draw the same image)
    values_moved = np.stack([a[k] != b[k] for k in a]).any(axis=0)
    images_differ = np.abs(first - second).reshape(400, -1).max(axis=1) > 0
    assert not np.any(images_differ & ~values_moved)
    assert images_differ[values_moved].mean() > 0.9
    again = fam.pairs(400, seed=5)
    assert np.array_equal(again[0], first) and np.array_equal(again[1], second)


def test_share_unchanged_averages_the_latents_a_pair_did_not_move() -> None:
    import torch

    from lexflow.families.vae import share_unchanged

    mean = torch.tensor([[0.0, 1.0, 2.0, 0.5], [3.0, 3.0, 3.0, 3.0],   # first images
                         [0.1, 1.1, -2.0, 0.5], [3.0, 3.0, 3.0, -3.0]])  # their partners
    logvar = torch.tensor([[0.0, 0.0, 0.0, -1.0], [0.0] * 4, [0.2, 0.0, 0.0, -1.0], [0.0] * 4])
    new_mean, new_logvar = share_unchanged(mean, logvar)
    # pair 0 moved latent 2 only: 0, 1 and 3 are shared (both images get the average), 2 is kept
    assert torch.allclose(new_mean[0], torch.tensor([0.05, 1.05, 2.0, 0.5]))
    assert torch.allclose(new_mean[2], torch.tensor([0.05, 1.05, -2.0, 0.5]))
    shared_var = torch.log(0.5 * (torch.exp(torch.tensor(0.0)) + torch.exp(torch.tensor(0.2))))
    assert torch.allclose(new_logvar[0, 0], shared_var) and torch.allclose(new_logvar[2, 0], shared_var)
    assert new_logvar[0, 2] == 0.0 and new_logvar[0, 3] == -1.0
    # pair 1 moved latent 3 only
    assert torch.equal(new_mean[1, :3], new_mean[3, :3]) and new_mean[1, 3] == 3.0 and new_mean[3, 3] == -3.0


TINY = TrainSettings(model="mask", latent_dim=4, n=512, epochs=1, batch_size=128)


def test_train_command_caches_the_checkpoint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from lexflow.families.__main__ import main

    args = ["train", "--family", "digits", "--n", "256", "--epochs", "1", "--latent-dim", "3",
            "--cache-dir", str(tmp_path)]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "latent" in first.output and len(list(tmp_path.glob("digits-*.pt"))) == 1
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0 and "trained" not in second.output
    # the unsupervised loop is another setting, so another checkpoint
    third = CliRunner().invoke(main, [*args, "--supervision", "none"])
    assert third.exit_code == 0 and "trained now" in third.output, third.output
    assert len(list(tmp_path.glob("digits-*.pt"))) == 2


def test_unknown_supervision_is_a_clear_error() -> None:
    from dataclasses import replace

    from lexflow.errors import ConfigError
    from lexflow.families.train import train

    with pytest.raises(ConfigError, match="Unknown supervision 'labels'; use one of pairs, none"):
        train(get_family("digits"), replace(TINY, supervision="labels"), progress=False)


def test_layered_vae_decodes_in_range() -> None:
    import torch

    from lexflow.families.vae import LayeredVAE

    model = LayeredVAE(latent_dim=5, layers=3).eval()
    with torch.no_grad():
        out = model.decode(torch.randn(2, 5))
    assert out.shape == (2, 3, 32, 32) and float(out.min()) > 0 and float(out.max()) < 1
    assert model.config()["layers"] == 3


def test_a_latent_reaches_a_layers_colour_only_through_that_layers_read_out() -> None:
    """With latent 2's weights zeroed in layer 0's read-out, no value of latent 2 (even far out,
    where a traversal ends) changes layer 0's colour, while it still changes layer 1's."""
    import torch

    from lexflow.families.vae import LayeredVAE

    torch.manual_seed(0)
    model = LayeredVAE(latent_dim=5, layers=3, colour_code=3).eval()
    with torch.no_grad():
        model.readout.weight[0:3, 2] = 0.0  # layer 0's read-out rows
        z = torch.randn(1, 5).repeat(7, 1)
        z[:, 2] = torch.linspace(-6.0, 6.0, 7)
        colours = model.layer_colours(z)
    assert colours.shape == (7, 3, 3)
    assert torch.equal(colours[:, 0], colours[:1, 0].expand(7, 3))
    assert float((colours[:, 1] - colours[:1, 1]).abs().max()) > 1e-3
    assert model.config()["colour_code"] == 3


@pytest.mark.slow
def test_suite_end_to_end_on_a_tiny_budget() -> None:
    from lexflow.families.train import load_or_train
    from lexflow.quality.suite import markdown_table, run_family

    fam = get_family("shapes3d")
    settings = TrainSettings(model="layered", layers=3, latent_dim=4, n=512, epochs=1, batch_size=128)
    model, where = load_or_train(fam, settings, progress=False, save=False)
    assert where.startswith("trained")
    run = run_family(fam, model, rows=2, eval_n=300, variants=("full", "no_bias", "no_uncertainty"))
    assert [v.variant for v in run.variants] == ["full", "no_bias", "no_uncertainty"]
    for v in run.variants:
        assert len(v.latents) == 4
        assert v.factor_accuracy is None or 0.0 <= v.factor_accuracy <= 1.0
    table = markdown_table([run])
    assert "| shapes3d | `measure` | no_uncertainty |" in table
