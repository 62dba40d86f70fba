"""Mean-field theory of signal propagation at init (Poole et al., 2016; Schoenholz et al.,
2017) for any activation: weights i.i.d. with mean 0 (sigma_w^2 = fan_in E[w^2]), biases
b0 + N(0, sigma_b^2); per input x, z_l ~ N(b0, v_l(x)) with

    v_1(x) = E[w^2] ||x||^2 + sigma_b^2,   v_{l+1}(x) = sigma_w^2 E[phi(z)^2] + sigma_b^2,

iterated per input and averaged (the map is not linear: on the mean input norm GELU/SiLU
are off by decades). delta_l changes by chi_l = sigma_w^2 E[phi'(z)^2] a layer; chi_1 at
the attracting fixed point q* gives the phase (ordered < 1 < chaotic), and
:func:`critical` solves chi_1(sigma_w^2, q*) = 1, or says where there is none or a line
(ReLU). Expectations: Gauss-Legendre over +-12 std, split at the kink at 0. numpy only.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Nodes per side of 0 (one Gauss-Hermite rule cannot see ReLU's kink: 0.456, not 0.5).
QUADRATURE_NODES = 96
SPAN_STDS = 12.0
# "Critical": the depth scale -1 / ln(chi_1) is beyond 20 layers.
CRITICAL_LOG_CHI = 0.05
# Fixed points looked for in this range: below, the signal is 0; above, it is unbounded.
Q_FLOOR, Q_CEILING = 1e-12, 1e12
# sigma_w^2 scanned for the edge of chaos (log-spaced): beyond 50, no activation here has one.
SIGMA_W2_RANGE = (0.05, 50.0)

_nodes, _weights = np.polynomial.legendre.leggauss(QUADRATURE_NODES)


def vectorized(f: Callable) -> Callable:
    """Mark ``f`` as taking an array of points (else it is called once per point)."""
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
    """E[f(z)], z ~ N(mean, var), for one variance or an array (var 0: f(mean)):
    Gauss-Legendre on mean +- 12 std, in two pieces split at 0."""
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
    """Per layer: q_l = E[z_l^2] averaged over the inputs; per hidden layer: chi_l, the ratio
    E||delta_l||^2 / E||delta_(l+1)||^2 of the inputs' averaged chains."""

    q: list[float]
    chi: list[float]
    sigma_w2: list[float]  # fan_in * E[w^2], per layer
    bias_mean: float
    sigma_b2: float


def predict(second_moments: list[float], fan_ins: list[int], bias_mean: float, sigma_b2: float,
            phi: Callable, slope: Callable, input_sq) -> Prediction:
    """The prediction for weights with ``second_moments`` E[w^2] and ``fan_ins`` per layer,
    on inputs of squared norms ``input_sq``."""
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
    """exp(-slope) of the least-squares line through (l, ln ||delta_l||): < 1, the signal
    shrinks toward the input. None with fewer than 2 positive values."""
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
    """For each ``sigma_w2``, the fixed point v* the (increasing) map reaches from ``start``:
    the first root of map(v) - v in the direction it moves, on a log grid, then bisection;
    0 below Q_FLOOR, inf past Q_CEILING."""
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
    """The fixed point v* reached from ``start``; 0 where it dies, None where unbounded."""
    v = float(_fixed_points(np.array([sigma_w2]), sigma_b2, bias_mean, phi, start)[0])
    return None if math.isinf(v) else v


def chi1(sigma_w2, var, bias_mean: float, slope: Callable):
    """sigma_w^2 E[phi'(z)^2], z ~ N(b0, var) (var 0: the small-variance limit)."""
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
    """The edge of chaos for one activation and bias: ``point`` (chi_1 = 1 at q*), ``line``
    (chi_1 independent of q: ReLU-like) or ``none`` (``grows_above``: where the signal
    becomes unbounded)."""

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
    """The sigma_w^2 with chi_1 = 1 at its fixed point: the first sign change of chi_1 - 1
    on a log scan of SIGMA_W2_RANGE, then bisection."""
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
