"""Mean-field theory (initlab.theory) against closed forms, an independent numerical
integral, and a wide random network measured with plain torch."""

import math

import numpy as np
import pytest
import torch

from initlab import theory
from initlab.options import ACTIVATIONS
from tests.conftest import compose_config


def _integral(f, mean: float, var: float) -> float:
    """E[f(z)], z ~ N(mean, var), by Simpson's rule on +-14 std, each side of 0 on its own
    (SELU's slope jumps there), f at 0 taken from the side being integrated (independent
    of the quadrature under test)."""
    std = math.sqrt(var)
    low, high = mean - 14 * std, mean + 14 * std
    pieces = [(low, 0.0), (0.0, high)] if low < 0 < high else [(low, high)]
    total = 0.0
    for a, b in pieces:
        z = np.linspace(a, b, 40_001)
        inside = np.clip(z, a + 1e-13 * (b - a), b - 1e-13 * (b - a))  # one-sided at the ends
        g = np.array([f(v) for v in inside.tolist()]) * np.exp(-((z - mean) ** 2) / (2 * var))
        h = (b - a) / 40_000
        total += h / 3 * (g[0] + g[-1] + 4 * g[1:-1:2].sum() + 2 * g[2:-1:2].sum())
    return float(total / math.sqrt(2 * math.pi * var))


def _spec(name: str, *overrides: str):
    cfg = compose_config(f"act={name}", *overrides).act
    spec = ACTIVATIONS[name]
    return spec.pointwise(cfg), spec.slope(cfg)


def test_relu_moments_are_their_closed_forms():
    phi, slope = _spec("relu")
    for var in (0.3, 1.0, 7.0):
        assert theory.gaussian_mean(lambda z: phi(z) ** 2, 0.0, var) == pytest.approx(var / 2, rel=1e-4)
        assert theory.gaussian_mean(lambda z: slope(z) ** 2, 0.0, var) == pytest.approx(0.5, rel=1e-4)
    # He init, no bias: chi_1 = sigma_w^2 / 2 = 1 exactly: critical; Xavier's gain 1: ordered.
    assert theory.chi1(2.0, 1.0, 0.0, slope) == pytest.approx(1.0, rel=1e-4)
    assert theory.phase(theory.chi1(2.0, 1.0, 0.0, slope)) == "critical"
    assert theory.phase(theory.chi1(1.0, 1.0, 0.0, slope)) == "ordered"
    assert theory.phase(theory.chi1(4.0, 1.0, 0.0, slope)) == "chaotic"


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "gelu", "selu"])
@pytest.mark.parametrize("mean, var", [(0.0, 0.5), (0.3, 2.0), (-1.0, 9.0)])
def test_quadrature_equals_an_independent_integral(name, mean, var):
    phi, slope = _spec(name)
    for f in (lambda z: phi(z) ** 2, lambda z: slope(z) ** 2):
        assert theory.gaussian_mean(f, mean, var) == pytest.approx(_integral(f, mean, var), rel=1e-6)


def test_the_critical_line_of_tanh_is_where_chi_is_one():
    phi, slope = _spec("tanh")
    for sigma_b2 in (0.0, 0.05, 0.3):
        s = theory.critical_sigma_w2(sigma_b2, 0.0, phi, slope)
        if sigma_b2 == 0:
            # Without bias the fixed point is q* = 0 below sigma_w^2 = 1 and chi_1 = sigma_w^2
            # there: the edge of chaos is sigma_w^2 = 1 (Poole et al., 2016).
            assert s == pytest.approx(1.0, abs=0.02)
            continue
        v = theory.fixed_point(s, sigma_b2, 0.0, phi)
        assert v is not None
        assert _integral(lambda z: slope(z) ** 2, 0.0, v) * s == pytest.approx(1.0, abs=1e-4)
        assert s > 1  # a bias pushes the edge of chaos to larger weights


@pytest.mark.parametrize("name, sigma_w2, sigma_b2", [("tanh", 1.5, 0.05), ("tanh", 3.0, 0.2)])
def test_predicted_variances_and_gradients_match_a_wide_random_net(name, sigma_w2, sigma_b2):
    """A width-1000 tanh net in float64, measured with plain torch: q_l and the per-layer
    ratio of squared backpropagated signals within a few percent of the prediction (finite
    width and 512 inputs: ~1-2% spread). Not ReLU: at width 1000 its q_l random-walks by
    ~5% a layer (the finite-width effect; seen here: 2.05 -> 2.43 over 5 layers for a
    predicted 2.00), while a bounded activation averages out."""
    phi, slope = _spec(name)
    width, depth, n = 1000, 6, 512
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 10, generator=gen, dtype=torch.float64)
    sizes = [10] + [width] * (depth - 1)
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
    out = h @ torch.randn(width, generator=gen, dtype=torch.float64) / math.sqrt(width)
    grads = torch.autograd.grad(out.sum(), zs)
    pred = theory.predict([sigma_w2 / i for i in sizes[:-1]], sizes[:-1], 0.0, sigma_b2, phi,
                          slope, float((x**2).sum(1).mean()))
    for k, z in enumerate(zs):
        assert float((z.detach() ** 2).mean()) == pytest.approx(pred.q[k], rel=0.04), k
    for k in range(len(zs) - 1):
        measured = float((grads[k] ** 2).sum(1).mean() / (grads[k + 1] ** 2).sum(1).mean())
        assert measured == pytest.approx(pred.chi[k], rel=0.06), k
