"""Init schemes against their closed forms (mean, std, bounds, orthogonality)."""

import math

import pytest
import torch
from omegaconf import OmegaConf

from initlab import init as I
from initlab.options import INITS, built_in

OUT, IN = 300, 500  # fan_out, fan_in of the test matrix: 150 000 draws per scheme


def gen():
    return torch.Generator().manual_seed(1234)


def act(name, **kw):
    return OmegaConf.create({"name": name, **kw})


def init(name, **kw):
    return OmegaConf.create({"name": name, "bias": 0.0, "bias_std": 0.0, **kw})


def drawn(init_cfg, act_cfg):
    return I.init_weight_(torch.empty(OUT, IN), init_cfg, act_cfg, gen())


@pytest.mark.parametrize(
    "init_cfg, act_cfg, expected_std",
    [
        (init("xavier_normal", gain=None), act("relu"), math.sqrt(2 / (IN + OUT))),  # gain 1
        (init("xavier_normal", gain=5 / 3), act("tanh"), 5 / 3 * math.sqrt(2 / (IN + OUT))),
        (init("kaiming_normal", mode="fan_in", gain=None), act("relu"), math.sqrt(2 / IN)),
        (init("kaiming_normal", mode="fan_out", gain=None), act("relu"), math.sqrt(2 / OUT)),
        (init("kaiming_normal", mode="fan_in", gain=1.0), act("relu"), math.sqrt(1 / IN)),
        (init("normal", mean=0.0, std=0.01), act("relu"), 0.01),
        (init("lecun_normal"), act("selu"), math.sqrt(1 / IN)),
        (init("variance_scaling", scale=2.0, mode="fan_in", distribution="normal"), act("relu"),
         math.sqrt(2 / IN)),
        (init("variance_scaling", scale=1.0, mode="fan_avg", distribution="truncated_normal"),
         act("relu"), math.sqrt(2 / (IN + OUT))),
        (init("variance_scaling", scale=3.0, mode="fan_out", distribution="uniform"), act("tanh"),
         math.sqrt(3 / OUT)),
    ],
    ids=["xavier_normal_gain_1", "xavier_normal_tanh_gain", "kaiming_normal_fan_in",
         "kaiming_normal_fan_out", "kaiming_explicit_gain", "normal", "lecun_normal",
         "variance_scaling_he", "variance_scaling_glorot_truncated", "variance_scaling_uniform"],
)
def test_schemes_have_their_closed_form_std(init_cfg, act_cfg, expected_std):
    w = drawn(init_cfg, act_cfg)
    # std of 150 000 draws is within ~0.4% of the truth; 2% leaves no room for a wrong formula
    assert w.std().item() == pytest.approx(expected_std, rel=0.02)
    assert abs(w.mean().item()) < 4 * expected_std / math.sqrt(w.numel())


def test_a_truncated_normal_is_cut_at_two_of_its_stds():
    w = drawn(init("lecun_normal"), act("selu"))
    underlying = math.sqrt(1 / IN) / 0.87962566103423978
    assert w.abs().max().item() <= 2 * underlying * (1 + 1e-6)
    assert w.abs().max().item() > 0.99 * 2 * underlying


def test_xavier_follows_torch_nn_init_at_gain_1():
    """torch.nn.init.xavier_uniform_ draws U(-a, a) from the generator it is given: the same
    numbers, whatever the activation."""
    ours = drawn(init("xavier_uniform", gain=None), act("relu"))
    theirs = torch.nn.init.xavier_uniform_(torch.empty(OUT, IN), generator=gen())
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-7)


@pytest.mark.parametrize(
    "init_cfg, act_cfg, bound",
    [
        (init("xavier_uniform", gain=5 / 3), act("tanh"), 5 / 3 * math.sqrt(6 / (IN + OUT))),
        (init("kaiming_uniform", mode="fan_in", gain=None), act("relu"), math.sqrt(6 / IN)),
        (init("uniform", low=-0.3, high=0.3), act("relu"), 0.3),
        (init("standard_uniform"), act("tanh"), 1 / math.sqrt(IN)),
    ],
    ids=["xavier_uniform_tanh", "kaiming_uniform", "uniform", "standard_uniform"],
)
def test_uniform_schemes_fill_their_bounds(init_cfg, act_cfg, bound):
    w = drawn(init_cfg, act_cfg)
    assert w.abs().max().item() <= bound
    assert w.abs().max().item() > 0.999 * bound  # the whole interval is used
    assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)  # U(-a, a): a / sqrt(3)


def test_random_biases_have_their_std_around_the_constant():
    linear = torch.nn.Linear(3, 20_000)
    I.init_linear_(linear.weight, linear.bias, init("normal", mean=0.0, std=1.0, bias=0.5,
                                                    bias_std=0.05), act("relu"), gen())
    assert linear.bias.mean().item() == pytest.approx(0.5, abs=4 * 0.05 / math.sqrt(20_000))
    assert linear.bias.std().item() == pytest.approx(0.05, rel=0.03)


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


@pytest.mark.parametrize("scheme", list(built_in(INITS)))
def test_init_linear_sets_every_bias_and_is_seeded(scheme):
    cfg = OmegaConf.create({"name": scheme, "bias": -8.0, "bias_std": 0.0, "value": 0.5,
                            "mean": 0.0, "std": 0.1, "low": -1.0, "high": 1.0, "gain": None,
                            "mode": "fan_in", "scale": 1.0, "distribution": "normal"})
    models = []
    for _ in range(2):
        m = torch.nn.Sequential(torch.nn.Linear(2, 6), torch.nn.ReLU(), torch.nn.Linear(6, 6),
                                torch.nn.ReLU(), torch.nn.Linear(6, 1))
        g = gen()
        for layer in m[0::2]:
            I.init_linear_(layer.weight, layer.bias, cfg, act("relu"), g)
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
    """parameter_shapes: the textbook's fc1 .. fcN, as nn.Linear layers of the sizes lay them out."""
    from initlab.model import parameter_shapes
    from tests.conftest import compose_config

    cfg = compose_config(f"model.depth={depth}", f"model.width={width}")
    sizes = [cfg.data.dim] + [width] * (depth - 1) + [1]
    shapes = {f"fc{k + 1}.{n}": list(p.shape) for k, (i, o) in enumerate(zip(sizes, sizes[1:]))
              for n, p in torch.nn.Linear(i, o).named_parameters()}
    assert list(parameter_shapes(cfg.model, cfg.data.dim).items()) == list(shapes.items())
