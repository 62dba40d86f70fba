"""Init schemes against their closed forms (mean, std, bounds, orthogonality)."""

import math

import pytest
import torch
from omegaconf import OmegaConf

from initlab import init as I
from initlab.model import build_model

OUT, IN = 300, 500  # fan_out, fan_in of the test matrix: 150 000 draws per scheme


def gen():
    return torch.Generator().manual_seed(1234)


def act(name, **kw):
    return OmegaConf.create({"name": name, **kw})


def test_recommended_gains_match_torch():
    for name, torch_name in [("sigmoid", "sigmoid"), ("tanh", "tanh"), ("relu", "relu"),
                             ("identity", "linear"), ("selu", "selu")]:
        assert I.recommended_gain(act(name)) == pytest.approx(torch.nn.init.calculate_gain(torch_name))
    assert I.recommended_gain(act("lrelu", negative_slope=0.2)) == pytest.approx(
        torch.nn.init.calculate_gain("leaky_relu", 0.2))


@pytest.mark.parametrize(
    "scheme, expected_std",
    [
        (lambda w: I.xavier_normal_(w, 1.0, gen()), math.sqrt(2 / (IN + OUT))),
        (lambda w: I.kaiming_normal_(w, math.sqrt(2), "fan_in", gen()), math.sqrt(2 / IN)),
        (lambda w: I.kaiming_normal_(w, math.sqrt(2), "fan_out", gen()), math.sqrt(2 / OUT)),
        (lambda w: I.normal_(w, 0.0, 0.01, gen()), 0.01),
    ],
    ids=["xavier_normal", "kaiming_normal_fan_in", "kaiming_normal_fan_out", "normal"],
)
def test_normal_schemes_have_closed_form_std(scheme, expected_std):
    w = scheme(torch.empty(OUT, IN))
    # std of 150 000 draws is within ~0.4% of the truth; 2% leaves no room for a wrong formula
    assert w.std().item() == pytest.approx(expected_std, rel=0.02)
    assert abs(w.mean().item()) < 4 * expected_std / math.sqrt(w.numel())


@pytest.mark.parametrize(
    "scheme, bound",
    [
        (lambda w: I.xavier_uniform_(w, 5 / 3, gen()), 5 / 3 * math.sqrt(6 / (IN + OUT))),
        (lambda w: I.kaiming_uniform_(w, math.sqrt(2), "fan_in", gen()), math.sqrt(6 / IN)),
        (lambda w: I.uniform_(w, -0.3, 0.3, gen()), 0.3),
    ],
    ids=["xavier_uniform_tanh", "kaiming_uniform", "uniform"],
)
def test_uniform_schemes_fill_their_bounds(scheme, bound):
    w = scheme(torch.empty(OUT, IN))
    assert w.abs().max().item() <= bound
    assert w.abs().max().item() > 0.999 * bound  # the whole interval is used
    assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)  # U(-a, a): a / sqrt(3)


def test_uniform_with_offset_bounds():
    w = I.uniform_(torch.empty(OUT, IN), 2.0, 3.0, gen())
    assert 2.0 <= w.min().item() and w.max().item() <= 3.0
    assert w.mean().item() == pytest.approx(2.5, abs=0.01)


def test_zeros_and_constant():
    assert torch.all(I.zeros_(torch.ones(3, 4)) == 0)
    assert torch.all(I.constant_(torch.zeros(3, 4), 0.7) == 0.7)


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (4, 4)])
def test_orthogonal_rows_or_columns_are_orthonormal(shape):
    w = I.orthogonal_(torch.empty(*shape), 2.0, gen()).double()
    small = min(shape)
    gram = w @ w.T if shape[0] <= shape[1] else w.T @ w
    assert torch.allclose(gram, 4.0 * torch.eye(small, dtype=torch.float64), atol=1e-5)


@pytest.mark.parametrize("scheme", I.SCHEMES)
def test_apply_init_sets_every_bias_and_is_seeded(scheme):
    cfg = OmegaConf.create({"name": scheme, "bias": -8.0, "value": 0.5, "mean": 0.0, "std": 0.1,
                            "low": -1.0, "high": 1.0, "gain": None, "mode": "fan_in"})
    model_cfg = OmegaConf.create({"in_features": 2, "width": 6, "depth": 3})
    models = []
    for _ in range(2):
        m = build_model(model_cfg, act("relu"))
        I.apply_init(m, cfg, act("relu"), gen())
        models.append(m)
    for name, p in models[0].named_parameters():
        if name.endswith("bias"):
            assert torch.all(p == -8.0)
    for (_, a), (_, b) in zip(models[0].named_parameters(), models[1].named_parameters()):
        assert torch.equal(a, b)  # same generator seed -> same weights


def test_unknown_scheme_lists_choices():
    cfg = OmegaConf.create({"name": "bogus", "bias": 0.0})
    with pytest.raises(ValueError, match="choose from: zeros"):
        I.init_weight_(torch.empty(2, 2), cfg, act("relu"), gen())


@pytest.mark.parametrize("depth, width", [(1, 4), (2, 5), (5, 3), (12, 7)])
def test_parameter_shapes_are_the_models_own(depth, width):
    """The stacked trainer lays out parameters from parameter_shapes without a model."""
    from initlab.model import build_model, parameter_shapes
    from tests.conftest import compose_config

    cfg = compose_config(f"model.depth={depth}", f"model.width={width}")
    model = build_model(cfg.model, cfg.act)
    assert parameter_shapes(cfg.model) == {n: list(p.shape) for n, p in model.named_parameters()}
