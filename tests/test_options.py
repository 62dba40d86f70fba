"""The option specs (initlab.options): each has its YAML and each YAML its spec, and what a
spec says (gain, pointwise function, second moment, data shape) against torch or a closed
form; the new inits (LSUV) and data sets (dim, standardize) against independent checks.
The ``custom`` options run the user's code: tests/test_custom_components.py."""

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from initlab import options
from initlab.config import ConfigError, validate
from initlab.data import make_splits
from initlab.init import init_weight_, lsuv_, weight_draw
from initlab.model import make_activation
from tests.conftest import compose_config

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.mark.parametrize("group", sorted(options.OPTION_GROUPS))
def test_every_spec_has_its_yaml_and_every_yaml_its_spec(group):
    specs = options.OPTION_GROUPS[group]
    yamls = {p.stem for p in (CONF / group).glob("*.yaml")}
    assert yamls == set(specs), f"conf/{group}: YAML without spec or spec without YAML"
    for name in specs:
        cfg = compose_config(f"{group}={name}")
        assert cfg[group].name == name
        first = OmegaConf.load(CONF / group / f"{name}.yaml").defaults[0]
        assert first == f"/{options.schema_name(group, name)}"


@pytest.mark.parametrize("name", list(options.built_in(options.ACTIVATIONS)))
def test_each_activations_pointwise_function_is_its_torch_module(name):
    cfg = compose_config(f"act={name}").act
    spec = options.ACTIVATIONS[name]
    f, module = spec.pointwise(cfg), make_activation(cfg)
    x = torch.linspace(-6, 6, 241, dtype=torch.float64)
    ours = torch.tensor([f(v) for v in x.tolist()], dtype=torch.float64)
    assert torch.allclose(ours, module(x), rtol=1e-12, atol=1e-12)
    if spec.bounded is not None:
        low, high = spec.bounded
        assert float(module(torch.tensor(-40.0))) == pytest.approx(low, abs=1e-6)
        assert float(module(torch.tensor(40.0))) == pytest.approx(high, abs=1e-6)


@pytest.mark.parametrize("name, torch_name, param", [
    ("sigmoid", "sigmoid", None), ("tanh", "tanh", None), ("relu", "relu", None),
    ("identity", "linear", None), ("selu", "selu", None), ("lrelu", "leaky_relu", 0.2)])
def test_gains_are_torchs(name, torch_name, param):
    overrides = [f"act={name}"] + ([f"act.negative_slope={param}"] if param is not None else [])
    cfg = compose_config(*overrides).act
    expected = torch.nn.init.calculate_gain(torch_name, param)
    assert options.ACTIVATIONS[name].gain(cfg) == pytest.approx(expected)


@pytest.mark.parametrize("name", list(options.built_in(options.INITS)))
def test_each_schemes_second_moment_is_what_it_draws(name):
    """Draw.second_moment (the sigma_w^2 / fan_in of mean-field theory) against 120 000 draws."""
    cfg = compose_config(f"init={name}", "act=tanh").init
    fan_out, fan_in = 300, 400
    w = init_weight_(torch.empty(fan_out, fan_in), cfg, compose_config("act=tanh").act,
                     torch.Generator().manual_seed(0))
    predicted = weight_draw((fan_out, fan_in), cfg, compose_config("act=tanh").act).second_moment(
        fan_in, fan_out)
    measured = float((w.double() ** 2).mean())
    # E[w^2] from n draws has relative std sqrt(Var(w^2)) / (sqrt(n) E[w^2]) <= ~0.8% here.
    assert measured == pytest.approx(predicted, rel=0.03, abs=1e-12)


def test_xavier_is_no_longer_he_on_relu():
    """He et al.'s comparison: Xavier (gain 1) and He (gain sqrt 2) differ by sqrt 2 in std on
    square layers, for ReLU too (before, Xavier took the activation's gain)."""
    relu = compose_config("act=relu").act
    xavier = weight_draw((32, 32), compose_config("init=xavier_normal").init, relu)
    he = weight_draw((32, 32), compose_config("init=kaiming_normal").init, relu)
    assert he.std / xavier.std == pytest.approx(math.sqrt(2))


@pytest.mark.parametrize("act_name", ["tanh", "relu"])
def test_lsuv_gives_each_layer_unit_output_variance_on_its_batch(act_name):
    cfg = compose_config("init=lsuv", f"act={act_name}", "model.depth=6", "model.width=20")
    layers = [torch.nn.Linear(2, 20)] + [torch.nn.Linear(20, 20) for _ in range(4)] + [torch.nn.Linear(20, 1)]
    module = make_activation(cfg.act)
    gen = torch.Generator().manual_seed(0)
    for fc in layers:
        init_weight_(fc.weight, cfg.init, cfg.act, gen)
        torch.nn.init.zeros_(fc.bias)
    x = torch.randn(256, 2, generator=gen) * 3
    passes = lsuv_([fc.weight for fc in layers], [fc.bias for fc in layers], make_activation(cfg.act),
                   x, cfg.init)
    assert all(1 <= p <= cfg.init.max_iterations for p in passes[:1])
    # An independent forward pass through the module: every layer's output variance.
    h = x
    with torch.no_grad():
        for k, fc in enumerate(layers):
            out = fc(h)
            assert abs(float(out.var(correction=0)) - 1) < cfg.init.tolerance, (k, passes)
            h = module(out) if k < len(layers) - 1 else out


def test_an_lsuv_run_starts_at_unit_variance(tmp_path):
    from initlab.run import run

    cfg = compose_config("init=lsuv", "act=tanh", "model.depth=4", "trainer.epochs=1",
                         "trainer.progress=false")
    run(cfg, tmp_path, quiet=True)
    state = torch.load(tmp_path / "checkpoints" / "init.pt")
    data = torch.load(tmp_path / "data.pt")
    h = data["X_train"][:256]
    for k in range(1, 5):
        out = h @ state[f"fc{k}.weight"].T + state[f"fc{k}.bias"]
        assert abs(float(out.var(correction=0)) - 1) < 0.1
        h = torch.tanh(out)


@pytest.mark.parametrize("name", list(options.built_in(options.DATASETS)))
def test_every_data_set_has_its_shape_both_labels_and_depends_only_on_its_seed(name):
    dim = 5 if options.DATASETS[name].any_dim else 2
    cfg = compose_config(f"data={name}", f"data.dim={dim}").data
    a, b = make_splits(cfg, 7), make_splits(cfg, 7)
    assert a.X_train.shape == (640, dim) and a.X_test.shape == (200, dim)
    assert a.X_train.dtype == torch.float32 and a.y_train.dtype == torch.float32
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.y_test, b.y_test)
    labels = torch.cat([a.y_train, a.y_dev, a.y_test])
    assert set(labels.unique().tolist()) == {0.0, 1.0}
    assert 0.3 < float(labels.mean()) < 0.7


def test_gaussian_first_rule_and_label_noise():
    clean = make_splits(compose_config("data=gaussian", "data.dim=3", "data.rule=first").data, 1)
    assert torch.equal(clean.y_train, (clean.X_train[:, 0] > 0).float())
    noisy = make_splits(compose_config("data=gaussian", "data.dim=3", "data.rule=first",
                                       "data.noise=0.2", "data.n_samples=4000").data, 1)
    flipped = float((noisy.y_train != (noisy.X_train[:, 0] > 0).float()).float().mean())
    # 640 labels flipped with p = 0.2: std sqrt(0.2 * 0.8 / 640) = 0.016; 4 std of room.
    assert abs(flipped - 0.2) < 4 * math.sqrt(0.2 * 0.8 / 640)


def test_a_teacher_labels_the_gaussian_data_linearly():
    """Labels from a linear teacher are linearly separable: least squares on +-1 targets
    followed by the sign recovers (almost) every training label."""
    s = make_splits(compose_config("data=gaussian", "data.dim=10").data, 3)
    w = torch.linalg.lstsq(s.X_train.double(), (2 * s.y_train - 1).double().unsqueeze(1)).solution
    agree = float(((s.X_train.double() @ w).squeeze(1) > 0).eq(s.y_train > 0.5).double().mean())
    assert agree > 0.9


def test_blob_centres_are_separation_apart():
    s = make_splits(compose_config("data=blobs", "data.dim=4", "data.separation=6",
                                   "data.noise=0").data, 0)
    X = torch.cat([s.X_train, s.X_dev, s.X_test]).double()
    y = torch.cat([s.y_train, s.y_dev, s.y_test])
    gap = X[y == 1].mean(0) - X[y == 0].mean(0)
    # Each centre is a mean of 500 unit-variance draws: 0.045 std per coordinate.
    assert float(gap.norm()) == pytest.approx(6, abs=0.3)


def test_standardize_uses_the_training_splits_numbers():
    raw = make_splits(compose_config("data=blobs", "data.dim=3").data, 2)
    std = make_splits(compose_config("data=blobs", "data.dim=3", "data.standardize=true").data, 2)
    mean, scale = raw.X_train.mean(0), raw.X_train.std(0, correction=0)
    assert torch.allclose(std.X_train.mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(std.X_train.std(0, correction=0), torch.ones(3), atol=1e-5)
    assert torch.allclose(std.X_test, (raw.X_test - mean) / scale, atol=1e-5)
    assert torch.equal(std.y_test, raw.y_test)


def test_moons_are_unchanged_by_the_new_options():
    """The textbook's data: the default keys (dim 2, no standardization) leave the moons
    exactly as the old generator made them (re-derived here from the formula)."""
    cfg = compose_config().data
    s = make_splits(cfg, 11)
    gen = torch.Generator().manual_seed(11)
    t = torch.linspace(0, math.pi, 500)
    X = torch.stack([torch.cat([torch.cos(t), 1 - torch.cos(t)]),
                     torch.cat([torch.sin(t), 0.5 - torch.sin(t)])], 1)
    order = torch.randperm(1000, generator=gen)
    X = X[order] + 0.2 * torch.randn(1000, 2, generator=gen)
    assert torch.equal(s.X_train, X[:640].float())


@pytest.mark.parametrize("overrides, message", [
    (["data=moons", "data.dim=3"], "data.dim=3: data=moons is 2-D"),
    (["data=gaussian", "data.dim=0"], "data.dim must be an integer >= 1"),
    (["data=gaussian", "data.rule=odd"], "data.rule='odd' is not one of: teacher, first"),
    (["init=variance_scaling", "init.mode=fan_sum"], "init.mode='fan_sum' is not one of"),
    (["init=variance_scaling", "init.distribution=cauchy"], "init.distribution='cauchy'"),
    (["init=variance_scaling", "init.scale=0"], "init.scale must be > 0"),
    (["init=lsuv", "init.max_iterations=0"], "init.max_iterations must be >= 1"),
    (["init.bias_std=-1"], "init.bias_std must be >= 0"),
    (["act=elu", "act.alpha=-1"], "act.alpha must be >= 0"),
])
def test_bad_option_values_fail_in_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(compose_config(*overrides))


@pytest.mark.parametrize("name", list(options.built_in(options.ACTIVATIONS)))
def test_each_activations_slope_is_autograds(name):
    cfg = compose_config(f"act={name}").act
    spec = options.ACTIVATIONS[name]
    slope, module = spec.slope(cfg), make_activation(cfg)
    x = torch.linspace(-6, 6, 240, dtype=torch.float64).requires_grad_(True)  # 0 is not a node
    (grad,) = torch.autograd.grad(module(x).sum(), x)
    ours = torch.tensor([slope(v) for v in x.detach().tolist()], dtype=torch.float64)
    assert torch.allclose(ours, grad, rtol=1e-10, atol=1e-12)
