"""Mean-field theory of signal propagation at init: what a wide random net should measure,
and where its edge of chaos lies, for any activation (the built-in ones and a custom one).

For a net whose weights are drawn i.i.d. with mean 0 (E[w^2] per entry, so sigma_w^2 =
fan_in E[w^2]) and whose biases are b0 + N(0, sigma_b^2), the pre-activations z_l of a
wide layer are Gaussian for each input x, z_l ~ N(b0, v_l(x)), with (Poole et al., 2016;
Schoenholz et al., 2017):

    v_1(x)     = E[w^2] ||x||^2 + sigma_b^2            (the first layer sees the input)
    v_{l+1}(x) = sigma_w^2 E_{z ~ N(b0, v_l(x))}[phi(z)^2] + sigma_b^2
    q_l        = mean over inputs of v_l(x) + b0^2

The map is iterated per input and then averaged: it is not linear, so iterating it on the
mean input norm is wrong by decades for GELU or SiLU, whose map shrinks small variances
much faster than large ones. The backpropagated signal delta_l = dLoss/dz_l of one input
changes by chi_l(x) = sigma_w,(l+1)^2 E[phi'(z)^2] per layer. At the attracting fixed point
q* of the map, chi_1 < 1 is the ordered phase (gradients vanish with depth), chi_1 > 1 the
chaotic one, chi_1 = 1 the edge of chaos; :func:`critical` finds the sigma_w^2 of that edge
for a given bias by solving chi_1(sigma_w^2, q*(sigma_w^2)) = 1, and says so where there is
none (the signal shrinks to 0 below some sigma_w^2 and grows without bound above it) or
where every q is a fixed point (a positively homogeneous phi: ReLU's line).

The expectations are Gauss-Legendre quadrature over +-12 standard deviations, split at 0,
where every activation here has its kink, vectorized over variances. numpy only.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Gauss-Legendre nodes per piece (each side of 0). Gauss-Hermite's single rule on the
# whole line cannot see a kink: for ReLU's E[phi'(z)^2] it gave 0.456 instead of 0.5.
# Split at the kink, smooth pieces converge fast (tests/test_theory.py: closed forms, and
# an independent Simpson rule on each half line, to 1e-9).
QUADRATURE_NODES = 96
SPAN_STDS = 12.0
# "Critical": the depth scale xi = -1 / ln(chi_1) over which gradients change by a factor e
# is beyond 20 layers, |ln chi_1| < 0.05 (deeper than any net of this lab trains well).
CRITICAL_LOG_CHI = 0.05
PHASES = ("ordered", "critical", "chaotic")
# The variances the fixed point is looked for in: below the floor the signal is 0 (a
# vanishing map), above the ceiling it grows without bound (no float32 net survives it).
Q_FLOOR, Q_CEILING = 1e-12, 1e12
# sigma_w^2 scanned for the edge of chaos (log-spaced): beyond 50, no activation here has one.
SIGMA_W2_RANGE = (0.05, 50.0)

_nodes, _weights = np.polynomial.legendre.leggauss(QUADRATURE_NODES)


def vectorized(f: Callable) -> Callable:
    """Mark ``f`` as taking a float64 array of points at once (and still one float), so
    :func:`gaussian_mean` calls it once for every node; a function without the mark is
    called once per point (a user's plain Python function)."""
    f.vectorized = True  # type: ignore[attr-defined]
    return f


def is_vectorized(f: Callable) -> bool:
    return getattr(f, "vectorized", False)


def squared(f: Callable[[float], float]) -> Callable[[float], float]:
    """z -> f(z)^2, vectorized where ``f`` is."""

    def f2(z):
        return f(z) ** 2

    return vectorized(f2) if is_vectorized(f) else f2


def _apply(f: Callable, x: np.ndarray) -> np.ndarray:
    if is_vectorized(f):
        return np.asarray(f(x), dtype=np.float64)
    return np.vectorize(f, otypes=[np.float64])(x)


def gaussian_mean(f: Callable, mean: float, var):
    """E[f(z)] for z ~ N(mean, var), ``var`` one variance or an array of them (the answer
    has its shape; var 0: f(mean)). Gauss-Legendre on [mean - 12 std, mean + 12 std] (the
    tails beyond hold 4e-33 of the mass), in two pieces split at 0 where 0 lies inside (a
    piece of zero width where it does not)."""
    v = np.asarray(var, dtype=np.float64)
    std = np.sqrt(np.maximum(v, 0.0))[..., None]
    low, high = mean - SPAN_STDS * std, mean + SPAN_STDS * std
    cut = np.clip(0.0, low, high)
    x = np.concatenate([(_nodes + 1) / 2 * (cut - low) + low,
                        (_nodes + 1) / 2 * (high - cut) + cut], axis=-1)
    w = np.concatenate([_weights / 2 * (cut - low), _weights / 2 * (high - cut)], axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        density = np.exp(-((x - mean) ** 2) / (2 * std**2)) / np.sqrt(2 * math.pi * std**2)
        out = np.sum(w * density * _apply(f, x), axis=-1)
    point = np.asarray(_apply(f, np.full(v.shape, float(mean))))
    out = np.where(v > 0, out, point)
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class Prediction:
    """Per layer fc1..fcN: the predicted q_l = E[z_l^2] (averaged over the inputs); per
    hidden layer fc1..fc(N-1): chi_l, the predicted ratio E||delta_l||^2 / E||delta_(l+1)||^2
    (square layers: equal widths; in general the fan-in of layer l+1 scales it), each input's
    chain of per-layer factors averaged, so their product is the averaged chain."""

    q: list[float]
    chi: list[float]
    sigma_w2: list[float]  # fan_in * E[w^2], per layer
    bias_mean: float
    sigma_b2: float


def predict(second_moments: list[float], fan_ins: list[int], bias_mean: float, sigma_b2: float,
            phi: Callable, slope: Callable, input_sq) -> Prediction:
    """The layer-by-layer prediction for weights with ``second_moments`` E[w^2] (one per
    layer) and ``fan_ins``, on inputs whose squared norms are ``input_sq`` (one per input,
    or one number: a single input's)."""
    sigma_w2 = [m * n for m, n in zip(second_moments, fan_ins)]
    norms = np.atleast_1d(np.asarray(input_sq, dtype=np.float64))
    line = _homogeneous(phi, slope, bias_mean)
    if line is not None:  # E[phi^2] = c v, E[phi'^2] = k: the map is affine, one trajectory
        c, k = line
        v = second_moments[0] * float(norms.mean()) + sigma_b2
        q = [v]
        for s in sigma_w2[1:]:
            q.append(s * c * q[-1] + sigma_b2)
        return Prediction(q, [s * k for s in sigma_w2[1:]], sigma_w2, bias_mean, sigma_b2)
    v = second_moments[0] * norms + sigma_b2
    variances = [v]
    for s in sigma_w2[1:]:
        v = s * gaussian_mean(squared(phi), bias_mean, v) + sigma_b2
        variances.append(np.asarray(v))
    # Each input's backward chain from the last hidden layer down, then averaged: the
    # ratio of consecutive averages is the per-layer factor the averaged chain takes.
    factors = [sigma_w2[k + 1] * np.asarray(gaussian_mean(squared(slope), bias_mean, variances[k]))
               for k in range(len(variances) - 1)]
    chain, chi = np.ones_like(variances[0]), []
    for f in reversed(factors):
        new = chain * f
        chi.append(float(new.mean() / chain.mean()) if chain.mean() > 0 else 0.0)
        chain = new
    return Prediction([float(v.mean()) + bias_mean**2 for v in variances], chi[::-1], sigma_w2,
                      bias_mean, sigma_b2)


def _homogeneous(phi: Callable, slope: Callable, bias_mean: float) -> tuple[float, float] | None:
    """(c, k) where E[phi(z)^2] = c var and E[phi'(z)^2] = k for z ~ N(0, var) (ReLU, leaky
    ReLU, identity, without a bias mean; checked at three variances), else None."""
    if bias_mean != 0:
        return None
    probe = np.array([0.1, 1.0, 10.0])
    second = np.asarray(gaussian_mean(squared(phi), 0.0, probe)) / probe
    slopes = np.asarray(gaussian_mean(squared(slope), 0.0, probe))
    if slopes[1] > 0 and np.allclose(slopes, slopes[1], rtol=1e-9, atol=0) \
            and np.allclose(second, second[1], rtol=1e-9, atol=0):
        return float(second[1]), float(slopes[1])
    return None


# ------------------------------------------------------------------ measured chains
def grad_factor(grad_sq: list[float]) -> float | None:
    """The factor by which the backpropagated signal's norm changes per layer toward the
    input: exp of the least-squares slope of ln ||delta_l|| against l, read from the output
    down (< 1: it shrinks toward the input). None with fewer than 2 positive values."""
    points = [(k, 0.5 * math.log(v)) for k, v in enumerate(grad_sq) if v is not None and v > 0]
    if len(points) < 2:
        return None
    mean_k = sum(k for k, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    slope = sum((k - mean_k) * (y - mean_y) for k, y in points) / \
        sum((k - mean_k) ** 2 for k, _ in points)
    return math.exp(-slope)


# ------------------------------------------------------------------ fixed point and phase
_Q_GRID = np.logspace(math.log10(Q_FLOOR), math.log10(Q_CEILING), 241)


def _fixed_points(sigma_w2: np.ndarray, sigma_b2: float, bias_mean: float, phi: Callable,
                  start: float) -> np.ndarray:
    """The attracting fixed point v* that the map reaches from ``start``, for each of the
    ``sigma_w2``: the map is increasing in v, so from ``start`` it moves monotonically to
    the first root of g(v) = map(v) - v in the direction of g(start). Found on a log grid
    of v, then by bisection in log v. 0 where it shrinks below Q_FLOOR, inf where it grows
    past Q_CEILING."""
    m = np.asarray(gaussian_mean(squared(phi), bias_mean, _Q_GRID))
    s = np.asarray(sigma_w2, dtype=np.float64)[:, None]
    g = s * m + sigma_b2 - _Q_GRID  # (sigma_w2, grid)
    at_start = s[:, 0] * gaussian_mean(squared(phi), bias_mean, start) + sigma_b2 - start
    i0 = int(np.searchsorted(_Q_GRID, start))
    # Where g is within rounding of 0 at the start (a line of fixed points), start is one.
    tolerance = 1e-9 * (s[:, 0] * abs(gaussian_mean(squared(phi), bias_mean, start)) + start)
    out = np.full(len(s), float(start))
    lo, hi = np.zeros(len(s)), np.zeros(len(s))
    todo = np.zeros(len(s), dtype=bool)
    for j in range(len(s)):
        if abs(at_start[j]) <= tolerance[j]:
            continue
        if at_start[j] > 0:  # grows: the first v above start with g <= 0
            above = np.nonzero(g[j, i0:] <= 0)[0]
            if not above.size:
                out[j] = math.inf
                continue
            k = i0 + above[0]
            lo[j], hi[j] = (start if k == i0 else _Q_GRID[k - 1]), _Q_GRID[k]
        else:  # shrinks: the first v below start with g >= 0
            below = np.nonzero(g[j, :i0][::-1] >= 0)[0]
            if not below.size:
                out[j] = 0.0
                continue
            k = i0 - 1 - below[0]
            lo[j], hi[j] = _Q_GRID[k], (start if k == i0 - 1 else _Q_GRID[k + 1])
        todo[j] = True
    if todo.any():
        a, b, sj = np.log(lo[todo]), np.log(hi[todo]), s[todo, 0]
        sign_a = np.sign(sj * gaussian_mean(squared(phi), bias_mean, np.exp(a)) + sigma_b2 - np.exp(a))
        for _ in range(60):  # the bracket shrinks to 1e-18 of its log width
            mid = (a + b) / 2
            gm = sj * gaussian_mean(squared(phi), bias_mean, np.exp(mid)) + sigma_b2 - np.exp(mid)
            same = np.sign(gm) == sign_a
            a, b = np.where(same, mid, a), np.where(same, b, mid)
        out[todo] = np.exp((a + b) / 2)
    return out


def fixed_point(sigma_w2: float, sigma_b2: float, bias_mean: float, phi: Callable,
                start: float = 1.0) -> float | None:
    """v* = sigma_w^2 E[phi(z)^2] + sigma_b^2, z ~ N(b0, v*): the fixed point the map
    reaches from ``start``; 0 where it shrinks to 0, None where it grows without bound."""
    v = float(_fixed_points(np.array([sigma_w2]), sigma_b2, bias_mean, phi, start)[0])
    return None if math.isinf(v) else v


def chi1(sigma_w2, var, bias_mean: float, slope: Callable):
    """sigma_w^2 E[phi'(z)^2], z ~ N(b0, var): how the squared gradient scales per layer
    (var 0, the fixed point of a vanishing signal: the limit of small variances)."""
    return sigma_w2 * gaussian_mean(squared(slope), bias_mean, np.maximum(var, Q_FLOOR))


def phase(chi: float) -> str:
    """ordered (chi_1 < 1: gradients vanish with depth), critical, or chaotic (they grow)."""
    if chi <= 0:
        return "ordered"
    log_chi = math.log(chi)
    if abs(log_chi) < CRITICAL_LOG_CHI:
        return "critical"
    return "ordered" if log_chi < 0 else "chaotic"


@dataclass(frozen=True)
class Critical:
    """The edge of chaos for one activation and bias. ``kind``: ``point`` (chi_1 = 1 at the
    fixed point q* of ``sigma_w2``), ``line`` (chi_1 does not depend on q, so ``sigma_w2``
    keeps every q: a positively homogeneous phi such as ReLU, where q* is any q without a
    bias spread and q grows by sigma_b^2 a layer with one), or ``none`` (no sigma_w^2 has
    chi_1 = 1 at a fixed point; ``grows_above``: the sigma_w^2 beyond which the signal grows
    without bound, where there is one). ``words`` says it in a sentence."""

    kind: str
    sigma_w2: float | None = None
    q_star: float | None = None
    grows_above: float | None = None

    @property
    def words(self) -> str:
        if self.kind == "point":
            return f"σ_w² ≈ {self.sigma_w2:.3g} is critical for this bias (χ₁ = 1 at q* = {self.q_star:.3g})"
        if self.kind == "line":
            return (f"σ_w² = {self.sigma_w2:.3g} keeps χ₁ = 1 at every q (a line of critical "
                    f"points, as ReLU's; with a bias spread q then grows by σ_b² a layer)")
        if self.grows_above is not None:
            return (f"no σ_w² puts χ₁ = 1 at a fixed point for this bias, and above σ_w² ≈ "
                    f"{self.grows_above:.3g} a unit-variance signal grows without bound")
        return "no σ_w² in 0.05-50 puts χ₁ = 1 at a fixed point for this bias"


def critical(sigma_b2: float, bias_mean: float, phi: Callable, slope: Callable,
             start: float = 1.0) -> Critical:
    """The sigma_w^2 where chi_1 at the fixed point reached from ``start`` is 1, solved: a
    scan of log sigma_w^2 over SIGMA_W2_RANGE for the first sign change of chi_1 - 1 between
    two finite fixed points, then bisection."""
    line = _homogeneous(phi, slope, bias_mean)
    if line is not None:
        return Critical("line", 1 / line[1])

    def excess(s: np.ndarray) -> np.ndarray:
        v = _fixed_points(s, sigma_b2, bias_mean, phi, start)
        chi = np.where(np.isfinite(v), chi1(s, np.where(np.isfinite(v), v, 1.0), bias_mean, slope), np.nan)
        return chi - 1, v

    grid = np.logspace(*np.log10(SIGMA_W2_RANGE), 121)
    e, v = excess(grid)
    finite = np.isfinite(e)
    crossing = np.nonzero(finite[:-1] & finite[1:] & (np.sign(e[:-1]) != np.sign(e[1:])))[0]
    if not crossing.size:
        lost = np.nonzero(finite[:-1] & ~finite[1:])[0]
        return Critical("none", grows_above=float(grid[lost[0] + 1]) if lost.size else None)
    a, b = np.log(grid[crossing[0]]), np.log(grid[crossing[0] + 1])
    sign_a = np.sign(e[crossing[0]])
    for _ in range(40):  # log sigma_w^2 to 1e-12 of the grid step
        mid = (a + b) / 2
        em, _ = excess(np.array([math.exp(mid)]))
        if np.sign(em[0]) == sign_a:
            a = mid
        else:
            b = mid
    s = math.exp((a + b) / 2)
    return Critical("point", s, float(_fixed_points(np.array([s]), sigma_b2, bias_mean, phi, start)[0]))
