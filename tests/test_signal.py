"""Signal propagation at init (initlab.signal) against an independent computation: a
plain nn.Module forward, autograd of each example's loss, torch.func's Jacobian; the
born-dead flag on a net killed by its biases; the record's init_signal block."""

import json
import math

import pytest
import torch

from initlab.model import activation_backward, make_activation
from initlab.signal import grad_factor, measure, member_signal
from tests.conftest import compose_config


def stacked_input(x: torch.Tensor) -> torch.Tensor:
    """One run's inputs (n, features) as the (1, features, n) stack measure() takes."""
    return x.t().unsqueeze(0).contiguous()


def model_params(model: torch.nn.Module) -> list[torch.Tensor]:
    """A module's parameters, fc1.weight, fc1.bias, ..., as a one-member stack."""
    return [p.detach().unsqueeze(0) for p in model.parameters()]


class PlainMLP(torch.nn.Module):
    """The textbook's MLP written plainly with nn.Linear layers fc1 .. fcN: the independent
    reference the stacked measurements are checked against."""

    def __init__(self, depth: int, width: int, act: torch.nn.Module):
        super().__init__()
        sizes = [2] + [width] * (depth - 1) + [1]
        for k in range(1, depth + 1):
            self.add_module(f"fc{k}", torch.nn.Linear(sizes[k - 1], sizes[k]))
        self.depth, self.act = depth, act

    def forward(self, x):
        for k in range(1, self.depth):
            x = self.act(getattr(self, f"fc{k}")(x))
        return getattr(self, f"fc{self.depth}")(x).squeeze(-1)


def _measured_on_zeros(cfg, model: "PlainMLP", n: int):
    """measure() and the record's block of ``model`` on n random inputs, labels all 0."""
    x = torch.randn(n, 2, dtype=torch.float64)
    act = make_activation(cfg.act)
    out = measure(model_params(model), act, activation_backward(act), stacked_input(x),
                  torch.zeros(1, n, dtype=torch.float64))
    layers = range(1, model.depth + 1)
    block = member_signal(out, 0, [f"fc{k}" for k in layers], cfg,
                          [tuple(getattr(model, f"fc{k}").weight.shape) for k in layers])
    return out, block


def _net(act_name: str, depth: int = 5, width: int = 6, bias: float = 0.0, seed: int = 0):
    cfg = compose_config(f"act={act_name}", f"model.depth={depth}", f"model.width={width}",
                         "init=normal", "init.std=0.7", f"init.bias={bias}")
    torch.manual_seed(seed)
    model = PlainMLP(depth, width, make_activation(cfg.act)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.7)
            if p.dim() == 1:
                p.add_(bias)
    return cfg, model


@pytest.mark.parametrize("act_name", ["tanh", "relu", "selu"])
def test_measurements_equal_a_plain_forward_and_autograd(act_name):
    cfg, model = _net(act_name)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(40, 2, generator=gen, dtype=torch.float64)
    y = (torch.rand(40, generator=gen) > 0.5).double()
    act = make_activation(cfg.act)
    out = measure(model_params(model), act, activation_backward(act), stacked_input(x), y.unsqueeze(0))
    # The independent computation: hooks on each Linear's output, autograd of the summed
    # per-example losses (example i's loss depends on its own z only).
    zs = []

    def keep(module, inputs, output):
        output.retain_grad()
        zs.append(output)

    hooks = [getattr(model, f"fc{k}").register_forward_hook(keep) for k in range(1, 6)]
    logits = model(x)
    torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum").backward()
    for h in hooks:
        h.remove()
    for k, z in enumerate(zs):
        assert float(out["q"][0, k]) == pytest.approx(float((z.detach() ** 2).mean()), rel=1e-9)
        assert float(out["grad_sq"][0, k]) == pytest.approx(float((z.grad ** 2).sum(1).mean()), rel=1e-9)
        if z.shape[1] > 1:
            a, b = z.detach()[0::2], z.detach()[1::2]
            cos = torch.nn.functional.cosine_similarity(a, b, dim=1).mean()
            assert float(out["corr"][0, k]) == pytest.approx(float(cos), rel=1e-6)
        else:
            assert math.isnan(float(out["corr"][0, k]))
    assert float(out["output_range"][0]) == pytest.approx(float((logits.max() - logits.min()).detach()))
    assert not bool(out["born_dead"][0])
    # The Jacobian of the hidden-to-hidden map h_1 -> h_4 at the first example.
    with torch.no_grad():
        h1 = act(model.fc1(x[:1]))

    def hidden(h):
        for k in range(2, 5):
            h = act(getattr(model, f"fc{k}")(h))
        return h

    jac = torch.autograd.functional.jacobian(hidden, h1)[0, :, 0, :]
    expected = torch.linalg.svdvals(jac)
    assert torch.allclose(out["jacobian_log_sv"][0, 0].exp(), expected, rtol=1e-8, atol=1e-12)
    # Each hidden layer's own Jacobian d h_k / d h_(k-1) (k = 2..4) at the first example:
    # the mean of its singular values (Glorot & Bengio's measure).
    h = h1
    for k in range(2, 5):
        layer = getattr(model, f"fc{k}")
        jac = torch.autograd.functional.jacobian(lambda v, f=layer: act(f(v)), h)[0, :, 0, :]
        assert float(out["layer_sv_mean"][0, k - 2]) == pytest.approx(
            float(torch.linalg.svdvals(jac).mean()), rel=1e-7)
        with torch.no_grad():
            h = act(layer(h))


def test_a_net_killed_by_its_biases_is_born_dead_and_says_where():
    cfg, model = _net("relu", bias=-8.0)
    out, block = _measured_on_zeros(cfg, model, 64)
    assert block["born_dead"] and block["output_range"] == 0
    assert block["dead_layer"] == "fc1"
    assert block["grad_sq"][:4] == [0.0, 0.0, 0.0, 0.0]
    assert block["theory"] is not None and block["theory"]["phase"] in ("ordered", "critical", "chaotic")


def test_grad_factor_is_the_geometric_rate_toward_the_input():
    # ||delta_l|| = 0.5^(N - l): squared norms 0.25^(N - l); the norm halves per layer.
    grad_sq = [0.25 ** (4 - k) for k in range(5)]
    assert grad_factor(grad_sq) == pytest.approx(0.5)
    assert grad_factor([None, 0.0, 1.0]) is None


def test_every_run_records_its_signal_at_init_and_the_theory_beside_it(tmp_path):
    from initlab.run import run

    cfg = compose_config("act=tanh", "init=variance_scaling", "init.scale=3", "init.distribution=normal",
                         "init.bias_std=0.2", "model.depth=6", "model.width=128", "trainer.epochs=1",
                         "trainer.progress=false")
    run(cfg, tmp_path, quiet=True)
    block = json.loads((tmp_path / "summary.json").read_text())["init_signal"]
    assert block["layers"] == [f"fc{k}" for k in range(1, 7)]
    theory = block["theory"]
    assert theory["sigma_w2"] == pytest.approx(3) and theory["sigma_b2"] == pytest.approx(0.04)
    # Width 128 (one seed): the hidden layers' q within 20% of the mean-field prediction
    # (seen: 2-12%; a one-unit output layer does not average, so it is left out).
    for measured, predicted in zip(block["q"][1:-1], theory["q"][1:-1]):
        assert measured == pytest.approx(predicted, rel=0.2)
    assert theory["phase"] == "chaotic"  # sigma_w^2 = 3, sigma_b^2 = 0.04: beyond the edge
    assert block["jacobian"]["examples"] == 8


def test_no_theory_for_inits_it_does_not_describe(tmp_path):
    from initlab.run import run

    for i, init in enumerate(["init=zeros", "init=lsuv", "init=constant"]):
        cfg = compose_config(init, "trainer.epochs=1", "trainer.progress=false")
        run(cfg, tmp_path / str(i), quiet=True)
        block = json.loads((tmp_path / str(i) / "summary.json").read_text())["init_signal"]
        assert block["theory"] is None, init


@pytest.mark.slow
def test_the_report_shows_the_signal_beside_the_theory(tmp_path):
    from initlab.report import render_run
    from initlab.run import run

    cfg = compose_config("act=tanh", "init=xavier_normal", "model.depth=5", "model.width=32",
                         "trainer.epochs=1", "trainer.progress=false")
    run(cfg, tmp_path, quiet=True)
    written = render_run(tmp_path, console=None, figures="full", tables="full")
    assert tmp_path / "figures" / "signal_at_init.png" in written
    text = (tmp_path / "tables" / "signal.txt").read_text()
    block = json.loads((tmp_path / "summary.json").read_text())["init_signal"]
    assert "q theory" in text and block["theory"]["phase"] in text
    assert f"{block['q'][0]:.3f}" in text


def test_an_activation_without_a_listed_kernel_is_measured_through_autograd():
    """A module activation_backward does not know (here Softplus) is measured through the
    autograd fallback: the same numbers as autograd through the nn.Module itself."""
    cfg, model = _net("relu")
    act = torch.nn.Softplus()
    x = torch.randn(32, 2, dtype=torch.float64)
    y = torch.ones(1, 32, dtype=torch.float64)
    out = measure(model_params(model), act, None, stacked_input(x), y)
    zs, h = [], x
    for k in range(1, 6):
        z = getattr(model, f"fc{k}")(h)
        z.retain_grad()
        zs.append(z)
        h = act(z) if k < 5 else z
    torch.nn.functional.binary_cross_entropy_with_logits(h.squeeze(1), y[0], reduction="sum").backward()
    for k, z in enumerate(zs):
        assert float(out["grad_sq"][0, k]) == pytest.approx(float((z.grad ** 2).sum(1).mean()), rel=1e-9)


def _linear_net_jacobian_logs(depth: int, width: int, seed: int):
    """A Gaussian N(0, 1/width) linear net: the measured log singular values of its hidden
    Jacobian W_(N-1) ... W_2 (examples share it), and the weights."""
    gen = torch.Generator().manual_seed(seed)
    params = []
    for k in range(depth):
        fan_out, fan_in = (1 if k == depth - 1 else width), (2 if k == 0 else width)
        params += [torch.randn(1, fan_out, fan_in, generator=gen, dtype=torch.float64) / math.sqrt(fan_in),
                   torch.zeros(1, fan_out, dtype=torch.float64)]
    act = torch.nn.Identity()
    x = torch.randn(1, 2, 16, generator=gen, dtype=torch.float64)
    out = measure(params, act, activation_backward(act), x, torch.zeros(1, 16, dtype=torch.float64))
    return out["jacobian_log_sv"][0], [params[2 * k][0] for k in range(1, depth - 1)]


@pytest.mark.parametrize("depth", [8, 20, 40])
def test_jacobian_spectra_are_exact_beyond_float64s_reach(depth):
    """The product of 6 (the formed product's path), 18 or 38 (the graded product's)
    Gaussian 12 x 12 matrices, multiplied out and decomposed in
    mpmath at 120 digits: every log singular value within 1e-6 of the measured one, though
    they span far more than float64's 16 decades (a product formed in float64, as before,
    capped log10 condition near 10)."""
    mpmath = pytest.importorskip("mpmath")
    logs, weights = _linear_net_jacobian_logs(depth, 12, seed=depth)
    assert torch.equal(logs[0], logs[-1])  # one product for every example of a linear net
    with mpmath.workdps(120):
        product = mpmath.eye(12)
        for w in weights:
            product = mpmath.matrix(w.tolist()) * product
        exact = sorted((float(mpmath.log(s)) for s in mpmath.svd_r(product, compute_uv=False)),
                       reverse=True)
    assert logs[0].tolist() == pytest.approx(exact, abs=1e-6)
    log10_condition = (exact[0] - exact[-1]) / math.log(10)
    assert log10_condition > {8: 1, 20: 10, 40: 20}[depth]


def test_the_record_counts_dead_units_as_exact_zeros_and_reports_the_log_condition():
    # fc3's unit 0 is 0 on every input (its bias kills it): the hidden Jacobian loses a rank.
    cfg, model = _net("relu", depth=6, width=5, seed=3)
    with torch.no_grad():
        model.fc3.bias[0] = -1e3
    out, block = _measured_on_zeros(cfg, model, 32)
    jac = block["jacobian"]
    assert jac["zeros"] >= jac["examples"]  # at least one per example
    logs = out["jacobian_log_sv"][0]
    finite = logs[torch.isfinite(logs)]
    assert jac["log10_condition"] == pytest.approx(float(finite.max() - finite.min()) / math.log(10))
    assert jac["std_log"] == pytest.approx(float(finite.std(correction=0)))
