"""Mean-field theory of signal propagation at init: what a wide random net should measure.

For a net whose weights are drawn i.i.d. with mean 0 (E[w^2] per entry, so sigma_w^2 =
fan_in E[w^2]) and whose biases are b0 + N(0, sigma_b^2), the pre-activations z_l of a
wide layer are Gaussian, z_l ~ N(b0, v_l), with (Poole et al., 2016; Schoenholz et al.,
2017):

    v_1     = E[w^2] * mean ||x||^2 + sigma_b^2            (the first layer sees the data)
    v_{l+1} = sigma_w^2 * E_{z ~ N(b0, v_l)}[phi(z)^2] + sigma_b^2
    q_l     = E[z_l^2] = v_l + b0^2

and the backpropagated signal delta_l = dLoss/dz_l shrinks or grows by
chi_l = sigma_w,(l+1)^2 * E_{z ~ N(b0, v_l)}[phi'(z)^2] per layer. At the fixed point q* of
the variance map, chi_1 < 1 is the ordered phase (gradients vanish with depth), chi_1 > 1
the chaotic one (they explode), chi_1 = 1 the critical line, the edge of chaos.

The expectations are Gauss-Legendre quadrature over +-12 standard deviations, split at 0,
where every activation here has its kink. This module imports numpy only.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Gauss-Legendre nodes per piece (each side of 0). Gauss-Hermite's single rule on the
# whole line cannot see a kink: for ReLU's E[phi'(z)^2] it gave 0.456 instead of 0.5.
# Split at the kink, smooth pieces converge fast (tests/test_theory.py: closed forms, and
# an independent integral to 1e-7).
QUADRATURE_NODES = 128
SPAN_STDS = 12.0
# "Critical": the depth scale xi = -1 / ln(chi_1) over which gradients change by a factor e
# is beyond 20 layers, |ln chi_1| < 0.05 (deeper than any net of this lab trains well).
CRITICAL_LOG_CHI = 0.05
PHASES = ("ordered", "critical", "chaotic")

_nodes, _weights = np.polynomial.legendre.leggauss(QUADRATURE_NODES)


def gaussian_mean(f: Callable[[float], float], mean: float, var: float) -> float:
    """E[f(z)] for z ~ N(mean, var) (var 0: f(mean)): Gauss-Legendre on [mean - 12 std,
    mean + 12 std] (the tails beyond hold 4e-33 of the mass), in two pieces where 0 lies
    inside."""
    if var <= 0:
        return float(f(mean))
    std = math.sqrt(var)
    low, high = mean - SPAN_STDS * std, mean + SPAN_STDS * std
    pieces = [(low, 0.0), (0.0, high)] if low < 0 < high else [(low, high)]
    total = 0.0
    for a, b in pieces:
        half = (b - a) / 2
        if is_vectorized(f):  # one call for every node (a custom module's own forward)
            x = _nodes * half + (a + b) / 2
            total += float(np.sum(_weights * half * f(x) * np.exp(-((x - mean) ** 2) / (2 * var))))
            continue
        for x, w in zip((_nodes * half + (a + b) / 2).tolist(), _weights.tolist()):
            total += w * half * f(x) * math.exp(-((x - mean) ** 2) / (2 * var))
    return total / math.sqrt(2 * math.pi * var)


def vectorized(f: Callable) -> Callable:
    """Mark ``f`` as taking a float64 array of points at once (and still one float), so
    :func:`gaussian_mean` calls it once per piece instead of once per node: what a custom
    activation's module-backed function needs (initlab.custom); the built-in functions are
    written for one float."""
    f.vectorized = True  # type: ignore[attr-defined]
    return f


def is_vectorized(f: Callable) -> bool:
    return getattr(f, "vectorized", False)


def squared(f: Callable[[float], float]) -> Callable[[float], float]:
    """z -> f(z)^2, vectorized where ``f`` is."""

    def f2(z):
        return f(z) ** 2

    return vectorized(f2) if is_vectorized(f) else f2


@dataclass(frozen=True)
class Prediction:
    """Per layer fc1..fcN: the predicted q_l = E[z_l^2]; per hidden layer fc1..fc(N-1):
    chi_l, the predicted ratio E||delta_l||^2 / E||delta_(l+1)||^2 (square layers: equal
    widths; in general the fan-in of layer l+1 scales it)."""

    q: list[float]
    chi: list[float]
    sigma_w2: list[float]  # fan_in * E[w^2], per layer
    bias_mean: float
    sigma_b2: float


def predict(second_moments: list[float], fan_ins: list[int], bias_mean: float, sigma_b2: float,
            phi: Callable[[float], float], slope: Callable[[float], float],
            input_sq: float) -> Prediction:
    """The layer-by-layer prediction for weights with ``second_moments`` E[w^2] (one per
    layer) and ``fan_ins``, on inputs whose mean squared norm is ``input_sq``."""
    sigma_w2 = [m * n for m, n in zip(second_moments, fan_ins)]
    v = second_moments[0] * input_sq + sigma_b2
    variances = [v]
    for s in sigma_w2[1:]:
        v = s * gaussian_mean(squared(phi), bias_mean, v) + sigma_b2
        variances.append(v)
    chi = [sigma_w2[k + 1] * gaussian_mean(squared(slope), bias_mean, variances[k])
           for k in range(len(variances) - 1)]
    return Prediction([v + bias_mean**2 for v in variances], chi, sigma_w2, bias_mean, sigma_b2)


def fixed_point(sigma_w2: float, sigma_b2: float, bias_mean: float, phi: Callable[[float], float],
                start: float = 1.0, iterations: int = 500, rtol: float = 1e-9) -> float | None:
    """v* = sigma_w^2 E[phi(z)^2] + sigma_b^2, z ~ N(b0, v*), by iterating the map from
    ``start``: where it has not settled after ``iterations`` layers (near the critical line
    it settles slowly), what the last of them sees. None where it grows without bound (a
    ReLU net without bias and sigma_w^2 > 2); a map that shrinks to 0 gives 0."""
    v = start
    for _ in range(iterations):
        new = sigma_w2 * gaussian_mean(squared(phi), bias_mean, v) + sigma_b2
        if not math.isfinite(new) or new > 1e100:
            return None
        if new < 1e-100:
            return 0.0
        if abs(new - v) <= rtol * v:
            return new
        v = new
    return v


def chi1(sigma_w2: float, var: float, bias_mean: float, slope: Callable[[float], float]) -> float:
    """sigma_w^2 E[phi'(z)^2], z ~ N(b0, var): how the squared gradient scales per layer
    (var 0, the fixed point of a vanishing signal: the limit of small variances)."""
    return sigma_w2 * gaussian_mean(squared(slope), bias_mean, max(var, 1e-12))


def phase(chi: float) -> str:
    """ordered (chi_1 < 1: gradients vanish with depth), critical, or chaotic (they grow)."""
    if chi <= 0:
        return "ordered"
    log_chi = math.log(chi)
    if abs(log_chi) < CRITICAL_LOG_CHI:
        return "critical"
    return "ordered" if log_chi < 0 else "chaotic"


def critical_sigma_w2(sigma_b2: float, bias_mean: float, phi: Callable[[float], float],
                      slope: Callable[[float], float], low: float = 0.05,
                      high: float = 20.0) -> float | None:
    """The sigma_w^2 where chi_1 at the fixed point is 1, for this bias (the edge of chaos),
    by bisection; None where chi_1 does not cross 1 in [low, high]."""

    def excess(sigma_w2: float) -> float | None:
        v = fixed_point(sigma_w2, sigma_b2, bias_mean, phi)
        return None if v is None else chi1(sigma_w2, v, bias_mean, slope) - 1

    lo, hi = excess(low), excess(high)
    if lo is None or hi is None or lo * hi > 0:
        return None
    a, b = low, high
    for _ in range(60):
        mid = (a + b) / 2
        m = excess(mid)
        if m is None:
            return None
        if (m < 0) == (lo < 0):
            a = mid
        else:
            b = mid
    return (a + b) / 2
