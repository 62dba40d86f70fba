"""The classic initialization papers as presets (``conf/experiment/<paper>.yaml`` with
``paper: <name>``): each paper's claim, and per seed group of its sweep (:func:`measure`)
initlab's number with a 95% interval (Student-t for a mean, Wilson for a rate, a bootstrap
for an ensemble estimator, none for a computed value) and the verdict of the claim's test
(:meth:`Expected.verdict`). docs/papers.md has each paper's setting and numbers.
Torch-free: it reads summary.json only.
"""

import functools
import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from initlab.record import LazyJSON
from initlab.theory import grad_factor, phase

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Quantity:
    """One number per job from its summary.json, or with ``pooled`` one for a group of jobs
    (an ensemble estimator, its interval a bootstrap over the jobs)."""

    name: str  # column header
    meaning: str  # what it is, in words
    read: Callable[[dict], float | bool | None] = lambda s: None
    rate: bool = False  # a yes/no per job: shown as a rate with its Wilson interval
    computed: bool = False  # the theory's value, not a measurement: shown without an interval
    pooled: Callable[[list[dict]], float | None] | None = None


@dataclass(frozen=True)
class Expected:
    """What the paper says for the jobs whose overrides include ``where``, tested on its first
    quantity: ``value`` inside the 95% interval widened by ``tolerance``, or the interval
    ``below`` / ``above`` a bound (none of them: no verdict)."""

    where: tuple[str, ...]
    says: str  # the paper's claim for these jobs, in words and numbers
    value: float | None = None  # the number to test against, where the claim has one
    tolerance: float = 0.0
    below: float | None = None
    above: float | None = None
    # The claim is mean-field theory's phase for each group's own (sigma_w^2, sigma_b^2) and
    # depth: ordered below 1, chaotic above, critical theory's own factor (:func:`expected_for`
    # makes it concrete from the group's summaries, :func:`theory_expectation`).
    theory_phase: bool = False

    def verdict(self, m: dict[str, Any]) -> str:
        """agrees / disagrees / undecided (straddles a bound); "" without a number."""
        if not m.get("n") or (self.value is None and self.below is None and self.above is None):
            return ""
        value = m["value"]
        low = m["low"] if math.isfinite(m.get("low", math.nan)) else value
        high = m["high"] if math.isfinite(m.get("high", math.nan)) else value
        if self.value is not None:
            inside = low - self.tolerance <= self.value <= high + self.tolerance
            return "agrees" if inside else "disagrees"
        if self.below is not None:
            return "agrees" if high < self.below else "disagrees" if low >= self.below else "undecided"
        return "agrees" if low > self.above else "disagrees" if high <= self.above else "undecided"


@dataclass(frozen=True)
class Paper:
    name: str
    citation: str
    claim: str
    quantities: tuple[Quantity, ...]
    expected: tuple[Expected, ...] = field(default_factory=tuple)


def _signal(key: str) -> Callable[[dict], Any]:
    return lambda s: (s.get("init_signal") or {}).get(key)


def _jacobian(key: str) -> Callable[[dict], Any]:
    return lambda s: ((s.get("init_signal") or {}).get("jacobian") or {}).get(key)


def _layer_sv_mean(s: dict) -> float | None:
    values = [v for v in _jacobian("layer_sv_mean")(s) or [] if v is not None]
    return statistics.fmean(values) if values else None


def _dev_acc(s: dict) -> float | None:
    return ((s.get("metrics") or {}).get("dev") or {}).get("acc")


def _hidden_q_gap(s: dict) -> float | None:
    """The largest hidden |q - 1| on training inputs LSUV did not scale on."""
    q = (s.get("init_signal") or {}).get("q_unseen") or []
    hidden = [v for v in q[:-1] if v is not None]
    return max(abs(v - 1) for v in hidden) if hidden else None


def _theory_factor(s: dict) -> float | None:
    theory = (s.get("init_signal") or {}).get("theory") or {}
    chi = theory.get("chi1")
    return math.sqrt(chi) if isinstance(chi, (int, float)) and chi >= 0 else None


def _ensemble_grad_factor(summaries: list[dict]) -> float | None:
    """The factor of E||delta_l||^2 averaged over the jobs layer by layer (a mean of per-net
    log-slopes is biased low at finite width: 0.96 for He at width 32)."""
    rows = [(s.get("init_signal") or {}).get("grad_sq") for s in summaries]
    rows = [r for r in rows if r and all(v is not None for v in r)]
    if not rows or len({len(r) for r in rows}) > 1:
        return None
    return grad_factor([sum(col) / len(col) for col in zip(*rows)])


ENSEMBLE_FACTOR = Quantity("gradient factor per layer (ensemble)",
                           "how E||delta_l||^2 over the seeds changes per layer toward the input, "
                           "as a norm factor", pooled=_ensemble_grad_factor)

def _hidden_grad_factor(s: dict) -> float | None:
    grad_sq = (s.get("init_signal") or {}).get("grad_sq") or []
    return grad_factor(grad_sq[:-1]) if len(grad_sq) > 2 else None


# The one-unit output layer tilts the fit (Xavier: x1.04 over all layers, x0.98 hidden).
HIDDEN_FACTOR = Quantity("gradient factor per hidden layer",
                         "the gradient factor fitted over the hidden layers fc1..fc(N-1) only",
                         _hidden_grad_factor)

GRAD_FACTOR = Quantity("gradient factor per layer",
                       "how the backpropagated signal's norm changes per layer toward the input "
                       "at init (fitted over all layers)", _signal("grad_factor"))

THEORY_FACTOR = Quantity("theory: sqrt(chi_1)", "mean-field theory's factor at the fixed point",
                         _theory_factor, computed=True)

PAPERS: dict[str, Paper] = {p.name: p for p in [
    Paper("he2015", "He, Zhang, Ren & Sun (2015), Delving deep into rectifiers, ICCV",
          "Sec. 2.2, Eqs. 10 and 14: a ReLU layer keeps the variance of the signal forward and "
          "of the gradient backward when 1/2 n Var[w] = 1 (He's init); Xavier's n Var[w] = 1 "
          "halves it at every layer (the norm x0.71 a layer), and Fig. 3's 30-layer net "
          "stalls with it (here: at 100 epochs; by 300, Xavier's nets learn too).",
          (ENSEMBLE_FACTOR, GRAD_FACTOR,
           Quantity("best dev acc", "best dev accuracy after training", _dev_acc)),
          (Expected(("init=xavier_normal",), "x0.71 a layer (1/sqrt 2)", 1 / math.sqrt(2),
                    tolerance=0.02),
           Expected(("init=kaiming_normal",), "x1.00 a layer", 1.0, tolerance=0.02))),
    Paper("glorot2010", "Glorot & Bengio (2010), Understanding the difficulty of training deep "
          "feedforward neural networks, AISTATS",
          "Sec. 4.2.2, Eq. 17: the average singular value of a hidden layer's Jacobian "
          "J = dz^(i+1)/dz^i of a tanh net is around 0.8 with the normalized init (Xavier) and "
          "drops down to 0.5 with the 'standard' U(+-1/sqrt(n)); the backpropagated gradients "
          "then shrink toward the input.",
          (Quantity("mean singular value of a hidden layer's Jacobian", "of D_l W_l, fc2..fc(N-1): "
                    "the hidden layers (not the input's nor the one-unit output's)",
                    _layer_sv_mean),
           HIDDEN_FACTOR),
          (Expected(("init=standard_uniform",), "0.5 ('drops down to 0.5'; to the paper's one "
                    "digit, +-0.05)", 0.5, tolerance=0.05),
           Expected(("init=xavier_uniform",), "0.8 ('around 0.8', +-0.05)", 0.8, tolerance=0.05))),
    Paper("saxe2014", "Saxe, McClelland & Ganguli (2014), Exact solutions to the nonlinear "
          "dynamics of learning in deep linear neural networks, ICLR",
          "In a deep linear net, orthogonal init makes the input-output Jacobian an isometry: "
          "every singular value is exactly 1 (dynamical isometry); a scaled Gaussian init with the "
          "same variance spreads them over orders of magnitude, more with depth.",
          (Quantity("std of log singular values", "spread of the hidden Jacobian's singular values "
                    "at init (0: all equal)", _jacobian("std_log")),
           Quantity("log10 condition number", "log10 of its largest over its smallest singular value",
                    _jacobian("log10_condition"))),
          (Expected(("init=orthogonal",), "0: every singular value 1", 0.0, tolerance=1e-4),
           Expected(("init=kaiming_normal",), "spread over orders of magnitude: above ln 10",
                    above=math.log(10)))),
    Paper("lu2019", "Lu, Shin, Su & Karniadakis (2019), Dying ReLU and initialization: theory "
          "and numerical examples",
          "They prove that a deep, narrow bias-free ReLU net with symmetric weights is born dead (a "
          "constant function) with a probability that grows with depth and tends to 1. For this "
          "setting (1-D input, width 3) the probability is computed: 57.85% at depth 10, 88.88% "
          "at depth 20 (4 million nets each; the net is positively homogeneous, so it is "
          "constant iff its last hidden layer is 0 at x = +1 and x = -1).",
          (Quantity("born dead", "the output is the same for every training input at init",
                    _signal("born_dead"), rate=True),),
          (Expected(("model.depth=10",), "57.85% (computed, +-0.1%)", 0.5785, tolerance=0.001),
           Expected(("model.depth=20",), "88.88% (computed, +-0.1%)", 0.8888, tolerance=0.001))),
    Paper("schoenholz2017", "Schoenholz, Gilmer, Ganguli & Sohl-Dickstein (2017), Deep "
          "information propagation, ICLR",
          "For tanh with sigma_b^2 = 0.05, the edge of chaos is sigma_w^2 ~ 1.76: below it "
          "gradients vanish with depth (ordered), above it they explode (chaotic), on it they "
          "travel through the whole net.",
          (GRAD_FACTOR, THEORY_FACTOR),
          (Expected(("init.scale=1.0",), "ordered: below 1", below=1.0),
           Expected(("init.scale=1.76",), "critical: x1.00 a layer", 1.0, tolerance=0.02),
           Expected(("init.scale=3.0",), "chaotic: above 1", above=1.0))),
    Paper("phase_diagram", "Schoenholz, Gilmer, Ganguli & Sohl-Dickstein (2017), Deep "
          "information propagation, ICLR, Fig. 1-2",
          "Over (sigma_w^2, sigma_b^2) a tanh net at init is ordered (gradients vanish with "
          "depth) or chaotic (they explode); the two phases meet on the critical line chi_1 = 1 "
          "that mean-field theory computes, from sigma_w^2 = 1 at sigma_b^2 = 0 rising with "
          "the bias. At each grid point the measured factor is on the side of 1 theory puts it for "
          "the net's depth.",
          (GRAD_FACTOR, THEORY_FACTOR),
          (Expected((), "theory's phase", theory_phase=True),)),
    Paper("lsuv2016", "Mishkin & Matas (2016), All you need is a good init, ICLR",
          "LSUV (orthogonal, then each layer scaled on a batch of data) gives every layer unit "
          "output variance at init, whatever the activation; orthogonal init alone does not.",
          (Quantity("max |q - 1| over hidden layers, held out", "the largest gap between a hidden "
                    "layer's mean squared pre-activation and 1 at init, on the 256 training inputs "
                    "after the 256 LSUV scaled on", _hidden_q_gap),
           Quantity("best dev acc", "best dev accuracy after training", _dev_acc)),
          (Expected(("init=lsuv",), "below 0.1 (the paper's tolerance)", below=0.1),
           Expected(("init=orthogonal",), "no such guarantee"))),
]}


def mean_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high), mean +- t_(n-1) s / sqrt(n) (one value: NaN to NaN)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = t_quantile(len(values) - 1, level) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


@functools.lru_cache(maxsize=256)
def t_quantile(df: int, level: float = 0.95) -> float:
    """t with P(|T| <= t) = level, df >= 1: Abramowitz & Stegun 26.7.3-4, by bisection."""
    if df < 1:
        raise ValueError(f"a t interval needs df >= 1 (got {df})")

    def inside(t: float) -> float:
        theta = math.atan(t / math.sqrt(df))
        c2, term, total = math.cos(theta) ** 2, 1.0, 1.0
        if df % 2:  # odd: (2/pi)(theta + sin cos (1 + 2/3 cos^2 + 2 4/(3 5) cos^4 + ...))
            for j in range(1, (df - 1) // 2):
                term *= c2 * (2 * j) / (2 * j + 1)
                total += term
            return 2 / math.pi * (theta + (math.sin(theta) * math.cos(theta) * total if df > 1 else 0))
        for j in range(1, df // 2):  # even: sin (1 + 1/2 cos^2 + 1 3/(2 4) cos^4 + ...)
            term *= c2 * (2 * j - 1) / (2 * j)
            total += term
        return math.sin(theta) * total

    low, high = 0.0, 1.0
    while inside(high) < level:
        high *= 2
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if inside(mid) < level else (low, mid)
    return (low + high) / 2


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a rate k/n (95% at the default z; Wilson, 1927)."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


BOOTSTRAP_RESAMPLES = 2000


def bootstrap_interval(pooled: Callable[[list[dict]], float | None], summaries: list[dict],
                       level: float = 0.95) -> tuple[float, float]:
    """The seeded percentile bootstrap interval of a pooled estimator over the jobs."""
    rng = random.Random(0)
    values = sorted(v for v in (pooled(rng.choices(summaries, k=len(summaries)))
                                for _ in range(BOOTSTRAP_RESAMPLES))
                    if v is not None and math.isfinite(v))
    if len(summaries) < 2 or not values:
        return math.nan, math.nan
    tail = (1 - level) / 2
    return values[int(tail * (len(values) - 1))], values[int(round((1 - tail) * (len(values) - 1)))]


def measure(quantity: Quantity, summaries: list[dict]) -> dict[str, Any]:
    """n, the value and its 95% interval (a computed value: its range over the jobs)."""
    if quantity.pooled is not None:
        # Each job's init_signal parsed once (a group record keeps it as text): the
        # bootstrap reads every job thousands of times.
        summaries = [{**s, "init_signal": s["init_signal"].value()}
                     if isinstance(s.get("init_signal"), LazyJSON) else s for s in summaries]
        value = quantity.pooled(summaries) if summaries else None
        if value is None or not math.isfinite(value):
            return {"n": 0}
        low, high = bootstrap_interval(quantity.pooled, summaries)
        return {"n": len(summaries), "value": value, "low": low, "high": high}
    raw = [quantity.read(s) for s in summaries]
    if quantity.rate:
        flags = [bool(v) for v in raw if v is not None]
        if not flags:
            return {"n": 0}
        k = sum(flags)
        low, high = wilson_interval(k, len(flags))
        return {"n": len(flags), "count": k, "value": k / len(flags), "low": low, "high": high}
    values = [float(v) for v in raw if isinstance(v, (int, float)) and math.isfinite(v)]
    if not values:
        return {"n": 0}
    if quantity.computed:  # no sampling error: the value, and its range where jobs differ
        return {"n": len(values), "value": statistics.fmean(values), "computed": True,
                "min": min(values), "max": max(values)}
    value, low, high = mean_interval(values)
    return {"n": len(values), "value": value, "low": low, "high": high}


def expected_for(paper: Paper, overrides: list[str], summaries: list[dict] = ()) -> Expected | None:
    """What the paper says for a group with these overrides (its jobs' ``summaries`` make a
    ``theory_phase`` claim concrete), or None."""
    given = set(overrides)
    for e in paper.expected:
        if all(w in given for w in e.where):
            return theory_expectation(summaries) if e.theory_phase else e
    return None


def _theory_depth_factor(s: dict) -> float | None:
    """Mean-field theory's gradient factor per layer for this net's own depth: the geometric
    mean of sqrt(chi_l) over its layers (where the signal still approaches q*, chi_l is not
    chi_1: at sigma_w^2 = 1, sigma_b^2 = 0 it reaches 1 only as a power law in depth)."""
    chi = ((s.get("init_signal") or {}).get("theory") or {}).get("chi") or []
    if not chi or not all(isinstance(c, (int, float)) and c > 0 for c in chi):
        return None
    return math.exp(statistics.fmean(math.log(c) for c in chi) / 2)


def theory_expectation(summaries: list[dict]) -> Expected | None:
    """Mean-field theory's phase at the group's (sigma_w^2, sigma_b^2) and depth as a claim on
    the measured gradient factor (None where theory has no chi for it)."""
    factors = [f for f in map(_theory_depth_factor, summaries) if f is not None]
    if not factors:
        return None
    factor = statistics.fmean(factors)
    where = phase(factor**2)
    if where == "critical":  # |ln chi| < 0.05: theory's own factor, not 1, is the number
        return Expected((), f"critical: theory at this depth x{factor:.3g} (+-0.02)", factor,
                        tolerance=0.02)
    side = "below" if where == "ordered" else "above"
    return Expected((), f"{where} (theory at this depth x{factor:.3g}): {side} 1", **{side: 1.0})


def describe(m: dict[str, Any], rate: bool) -> str:
    if not m.get("n"):
        return "–"
    if rate:
        return f"{m['count']} of {m['n']} = {m['value']:.0%} ({m['low']:.0%}-{m['high']:.0%})"
    if m.get("computed"):
        low, high = f"{m['min']:.3g}", f"{m['max']:.3g}"
        spread = "" if low == high else f", {low} to {high} over jobs"
        return f"{m['value']:.3g} (computed: no interval{spread})"
    if m["n"] < 2:
        return f"{m['value']:.3g} (one job: no interval)"
    return f"{m['value']:.3g} ({m['low']:.3g} to {m['high']:.3g}), n={m['n']}"
