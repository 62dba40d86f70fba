"""Mean-field theory (initlab.theory) against closed forms, an independent quadrature written
here (composite Simpson on each half line, not the module's Gauss-Legendre), and a wide
random network measured with plain torch."""

import math

import numpy as np
import pytest
import torch

from initlab import theory
from initlab.options import ACTIVATIONS
from tests.conftest import compose_config


def _integral(f, mean: float, var: float) -> float:
    """E[f(z)], z ~ N(mean, var), by Simpson's rule on +-14 std, each side of 0 on its own
    (SELU's slope jumps there), f at 0 taken from the side being integrated."""
    std = math.sqrt(var)
    low, high = mean - 14 * std, mean + 14 * std
    pieces = [(low, 0.0), (0.0, high)] if low < 0 < high else [(low, high)]
    total = 0.0
    for a, b in pieces:
        z = np.linspace(a, b, 20_001)
        inside = np.clip(z, a + 1e-13 * (b - a), b - 1e-13 * (b - a))  # one-sided at the ends
        g = np.asarray(f(inside)) * np.exp(-((z - mean) ** 2) / (2 * var))
        h = (b - a) / 20_000
        total += h / 3 * (g[0] + g[-1] + 4 * g[1:-1:2].sum() + 2 * g[2:-1:2].sum())
    return float(total / math.sqrt(2 * math.pi * var))


def _spec(name: str, *overrides: str):
    cfg = compose_config(f"act={name}", *overrides).act
    spec = ACTIVATIONS[name]
    return spec.pointwise(cfg), spec.slope(cfg)


def _map(phi, sigma_w2: float, sigma_b2: float, v: float) -> float:
    return sigma_w2 * _integral(lambda z: phi(z) ** 2, 0.0, v) + sigma_b2


def test_relu_moments_are_their_closed_forms():
    phi, slope = _spec("relu")
    for var in (0.3, 1.0, 7.0):
        assert theory.gaussian_mean(lambda z: phi(z) ** 2, 0.0, var) == pytest.approx(var / 2, rel=1e-9)
        assert theory.gaussian_mean(lambda z: slope(z) ** 2, 0.0, var) == pytest.approx(0.5, rel=1e-9)
    # He init, no bias: chi_1 = sigma_w^2 / 2 = 1 exactly: critical; Xavier's gain 1: ordered.
    assert theory.chi1(2.0, 1.0, 0.0, slope) == pytest.approx(1.0, rel=1e-9)
    assert theory.phase(theory.chi1(2.0, 1.0, 0.0, slope)) == "critical"
    assert theory.phase(theory.chi1(1.0, 1.0, 0.0, slope)) == "ordered"
    assert theory.phase(theory.chi1(4.0, 1.0, 0.0, slope)) == "chaotic"


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "gelu", "silu", "selu", "elu"])
@pytest.mark.parametrize("mean, var", [(0.0, 0.5), (0.3, 2.0), (-1.0, 9.0)])
def test_quadrature_equals_an_independent_integral(name, mean, var):
    phi, slope = _spec(name)
    for f in (lambda z: phi(z) ** 2, lambda z: slope(z) ** 2):
        assert theory.gaussian_mean(f, mean, var) == pytest.approx(_integral(f, mean, var), rel=1e-9)
    # Vectorized over variances: each entry is its own mean.
    both = theory.gaussian_mean(lambda z: phi(z) ** 2, mean, np.array([var, 4 * var]))
    assert both[1] == pytest.approx(_integral(lambda z: phi(z) ** 2, mean, 4 * var), rel=1e-9)


# Three (sigma_w^2, sigma_b^2) per activation: ordered, near the edge, chaotic or growing.
SETTINGS = [(1.0, 0.0), (1.76, 0.05), (3.0, 0.3)]


@pytest.mark.parametrize("name", ["tanh", "relu", "gelu", "silu", "selu"])
@pytest.mark.parametrize("sigma_w2, sigma_b2", SETTINGS)
def test_the_variance_map_is_iterated_per_input_then_averaged(name, sigma_w2, sigma_b2):
    """q_l and the gradient chain of a depth-6 net on five inputs of very different norms,
    against the map iterated here per input with the independent integral."""
    phi, slope = _spec(name)
    norms_sq = np.array([0.01, 0.3, 1.0, 4.0, 20.0])  # inputs of dimension 2
    depth, width = 6, 100
    moments = [sigma_w2 / 2] + [sigma_w2 / width] * (depth - 1)
    pred = theory.predict(moments, [2] + [width] * (depth - 1), 0.0, sigma_b2, phi, slope, norms_sq)
    per_input, chains = [], []
    for n in norms_sq:
        v = [sigma_w2 / 2 * n + sigma_b2]
        for _ in range(depth - 1):
            v.append(_map(phi, sigma_w2, sigma_b2, v[-1]))
        chain = [1.0]
        for k in range(depth - 2, -1, -1):
            chain.append(chain[-1] * sigma_w2 * _integral(lambda z: slope(z) ** 2, 0.0, v[k]))
        per_input.append(v)
        chains.append(chain[::-1])
    expected_q = np.mean(per_input, axis=0)
    assert pred.q == pytest.approx(expected_q.tolist(), rel=1e-8)
    averaged = np.mean(chains, axis=0)  # fc1..fc(N-1) relative to the last hidden layer
    assert np.cumprod(pred.chi[::-1])[::-1] == pytest.approx(averaged[:-1].tolist(), rel=1e-8)


def test_iterating_on_the_mean_input_is_wrong_by_decades_for_gelu():
    """The fault this module fixes: GELU's map shrinks small variances faster than large
    ones, so the mean input's trajectory is far below the mean of the trajectories."""
    phi, slope = _spec("gelu")
    norms_sq = np.random.default_rng(0).chisquare(2, 256)
    moments = [1.0] + [2 / 128] * 29
    fans = [2] + [128] * 29
    each = theory.predict(moments, fans, 0.0, 0.0, phi, slope, norms_sq).q[-1]
    pooled = theory.predict(moments, fans, 0.0, 0.0, phi, slope, norms_sq.mean()).q[-1]
    assert each / pooled > 1e3


@pytest.mark.parametrize("name", ["tanh", "gelu", "silu", "selu"])
@pytest.mark.parametrize("sigma_w2, sigma_b2", SETTINGS)
def test_the_fixed_point_is_the_attractor_reached_from_one(name, sigma_w2, sigma_b2):
    phi, slope = _spec(name)
    v = theory.fixed_point(sigma_w2, sigma_b2, 0.0, phi)
    # Independently: iterate the map from 1 until it settles, leaves [1e-9, 1e9], or 400 layers.
    w = 1.0
    for _ in range(400):
        new = _map(phi, sigma_w2, sigma_b2, w)
        if abs(new - w) < 1e-12 * w or not 1e-9 < new < 1e9:
            w = new
            break
        w = new
    if v is None:
        assert w > 1e9
    elif v < 1e-9:
        assert w < 1e-2  # shrinking to 0 (as 1 / layer at tanh's sigma_w^2 = 1: 1.3e-3 here)
    else:
        assert _map(phi, sigma_w2, sigma_b2, v) == pytest.approx(v, rel=1e-9)
        assert w == pytest.approx(v, rel=1e-4)  # SELU at 1.76 still creeps up after 400 layers
        assert theory.chi1(sigma_w2, v, 0.0, slope) == pytest.approx(
            sigma_w2 * _integral(lambda z: slope(z) ** 2, 0.0, v), rel=1e-9)


@pytest.mark.parametrize("name, sigma_b2, expected", [
    ("tanh", 0.0, 1.0),  # q* = 0 and chi_1 = sigma_w^2 phi'(0)^2 (Poole et al., 2016)
    ("tanh", 0.05, 1.76),  # Schoenholz et al. (2017), fig. 1
    ("tanh", 0.3, None), ("selu", 0.05, None), ("gelu", 0.3, None), ("elu", 0.05, None)])
def test_the_critical_variance_solves_chi_equal_one_at_the_fixed_point(name, sigma_b2, expected):
    phi, slope = _spec(name)
    edge = theory.critical(sigma_b2, 0.0, phi, slope)
    assert edge.kind == "point"
    s, q = edge.sigma_w2, edge.q_star
    if expected is not None:
        assert s == pytest.approx(expected, abs=0.005)
    if q > 1e-6:
        assert _map(phi, s, sigma_b2, q) == pytest.approx(q, rel=1e-7)
        assert s * _integral(lambda z: slope(z) ** 2, 0.0, q) == pytest.approx(1.0, abs=1e-6)
    # A crossing: ordered just below, chaotic just above.
    for factor, side in ((0.99, -1), (1.01, 1)):
        v = theory.fixed_point(s * factor, sigma_b2, 0.0, phi)
        assert v is not None
        chi = s * factor * _integral(lambda z: slope(z) ** 2, 0.0, max(v, 1e-10))
        assert math.copysign(1, chi - 1) == side


@pytest.mark.parametrize("name", ["gelu", "silu"])
def test_gelu_and_silu_without_bias_have_no_critical_variance(name):
    """phi(0) = 0 but phi is not tanh-like: 1 / phi'(0)^2 = 4 is not critical. Below the
    growth boundary the fixed point is 0 with chi_1 = sigma_w^2 / 4 < 1; above it a
    unit-variance signal grows without bound (checked here by iterating the map)."""
    phi, slope = _spec(name)
    edge = theory.critical(0.0, 0.0, phi, slope)
    assert edge.kind == "none" and edge.sigma_w2 is None and "no σ_w²" in edge.words
    assert 2.0 < edge.grows_above < 3.0
    for factor, grows in ((0.95, False), (1.05, True)):
        v = 1.0
        for _ in range(150):
            v = _map(phi, edge.grows_above * factor, 0.0, v)
            if v > 1e6 or v < 1e-6:
                break
        assert (v > 1e6) == grows
    # At 4 it does not sit at a fixed point: it explodes.
    assert theory.fixed_point(4.0, 0.0, 0.0, phi) is None


@pytest.mark.parametrize("name, expected", [("relu", 2.0), ("identity", 1.0)])
def test_a_positively_homogeneous_activation_has_a_line_of_critical_points(name, expected):
    phi, slope = _spec(name)
    for sigma_b2 in (0.0, 0.05, 0.3):
        edge = theory.critical(sigma_b2, 0.0, phi, slope)
        assert edge.kind == "line" and edge.q_star is None
        assert edge.sigma_w2 == pytest.approx(expected, rel=1e-9)
        assert "every q" in edge.words


def test_a_custom_plain_python_activation_gets_the_same_answer():
    """A function without numpy (called point by point) is integrated as a vectorized one."""
    phi, slope = _spec("tanh")
    edge = theory.critical(0.05, 0.0, lambda x: math.tanh(x), lambda x: 1 - math.tanh(x) ** 2)
    assert edge.sigma_w2 == pytest.approx(theory.critical(0.05, 0.0, phi, slope).sigma_w2, rel=1e-9)


@pytest.mark.parametrize("name, sigma_w2, sigma_b2", [("tanh", 1.5, 0.05), ("tanh", 3.0, 0.2)])
def test_predicted_variances_and_gradients_match_a_wide_random_net(name, sigma_w2, sigma_b2):
    """A width-1000 tanh net in float64, measured with plain torch: q_l and the per-layer
    ratio of squared backpropagated signals within a few percent of the prediction (finite
    width and 512 inputs: ~1-2% spread). Not ReLU: at width 1000 its q_l random-walks by
    ~5% a layer (the finite-width effect; seen here: 2.05 -> 2.43 over 5 layers for a
    predicted 2.00), while a bounded activation averages out. The inputs' norms spread
    over a decade, so the map must be iterated per input."""
    phi, slope = _spec(name)
    width, depth, n = 1000, 6, 512
    gen = torch.Generator().manual_seed(0)
    # Inputs whose squared norms spread over a decade (so averaging per input matters), in as many
    # dimensions as the width: W1's finite-width error is not shared by every input.
    x = torch.randn(n, width, generator=gen, dtype=torch.float64) \
        * (0.6 * torch.randn(n, 1, generator=gen, dtype=torch.float64)).exp()
    sizes = [width] * depth
    weights = [torch.randn(o, i, generator=gen, dtype=torch.float64) * math.sqrt(sigma_w2 / i)
               for i, o in zip(sizes, sizes[1:])]
    biases = [torch.randn(o, generator=gen, dtype=torch.float64) * math.sqrt(sigma_b2)
              for o in sizes[1:]]
    act = torch.tanh
    h, zs = x, []
    for w, b in zip(weights, biases):
        z = (h @ w.T + b).requires_grad_(True)
        zs.append(z)
        h = act(z)
    # A linear output layer (E[r^2] = 1 / width) whose gradient is a random sign vector of
    # each input's own: the chain starts from the same norm for every input, as signal.py's
    # per-example loss does, and its finite-width noise is not shared by all inputs.
    readout = torch.randn(width, width, generator=gen, dtype=torch.float64) / math.sqrt(width)
    out = (h @ readout).requires_grad_(True)
    zs.append(out)
    signs = torch.randint(0, 2, out.shape, generator=gen).double() * 2 - 1
    grads = torch.autograd.grad(out, zs, grad_outputs=signs)
    moments = [sigma_w2 / i for i in sizes[:-1]] + [1 / width]
    pred = theory.predict(moments, sizes, 0.0, sigma_b2, phi, slope, (x**2).sum(1).numpy())
    for k, z in enumerate(zs[:-1]):
        assert float((z.detach() ** 2).mean()) == pytest.approx(pred.q[k], rel=0.04), k
    for k in range(len(zs) - 1):
        measured = float((grads[k] ** 2).sum(1).mean() / (grads[k + 1] ** 2).sum(1).mean())
        assert measured == pytest.approx(pred.chi[k], rel=0.06), k
    pooled = theory.predict(moments, sizes, 0.0, sigma_b2, phi, slope, float((x**2).sum(1).mean()))
    # The map iterated on the mean input norm misses fc2 by far more than that (0.94 for 0.76).
    assert abs(pooled.q[1] / float((zs[1].detach() ** 2).mean()) - 1) > 0.1
