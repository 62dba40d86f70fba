"""One home per option: the spec of every activation, init scheme and data set.

Each spec says everything initlab needs to know about its option — its config schema, the
checks of its values, how the model builds it, its gain, whether it saturates, how the
report names it — and everything else reads it from here: validation and schema
registration (:mod:`initlab.config`), the model (:mod:`initlab.model`), the init
(:mod:`initlab.init`), the data (:mod:`initlab.data`), the diagnosis and the report.
Adding an activation, an init or a data set is a spec here and a YAML file under
``conf/`` (tests/test_options.py checks that each has the other). The ``custom`` option of
each group is the user's own component, named by ``_target_``; :mod:`initlab.custom` holds
its contracts and checks.

This module must not import torch at import time (``initlab run --help`` loads it): the
few callables that need torch import it when called.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Optional

from omegaconf import MISSING, OmegaConf

from initlab import custom
from initlab.custom import CUSTOM, is_custom

Check = Callable[[bool, str], None]


def _no_checks(cfg: Any, check: Check) -> None:
    return None


def finite(check: Check, key: str, value: Any) -> None:
    check(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
          f"{key} must be a finite number (got {value})")


def at_least(check: Check, key: str, value: Any, bound: float, strict: bool = False) -> None:
    """``value`` is a finite number >= ``bound`` (> where ``strict``)."""
    finite(check, key, value)
    check(value > bound if strict else value >= bound,
          f"{key} must be {'>' if strict else '>='} {bound} (got {value})")


def one_of(check: Check, key: str, value: Any, choices: tuple) -> None:
    check(value in choices, f"{key}={value!r} is not one of: {', '.join(choices)}")


def _minimum(key: str, bound: float, strict: bool = False) -> Callable[[Any, Check], None]:
    """The check of an option whose one setting, ``key`` (group.name), has a lower bound."""
    name = key.split(".")[1]
    return lambda cfg, check: at_least(check, key, cfg[name], bound, strict)


# ======================================================================= activations
@dataclass
class ActConfig:
    name: str = MISSING


@dataclass
class LeakyReLUConfig(ActConfig):
    name: str = "lrelu"
    negative_slope: float = 0.01


@dataclass
class ELUConfig(ActConfig):
    name: str = "elu"
    alpha: float = 1.0


@dataclass
class CustomActConfig(ActConfig):
    name: str = CUSTOM
    # A torch.nn.Module class or a factory returning one; the node's other keys are its
    # keyword arguments (act.beta=2).
    _target_: str = MISSING


@dataclass(frozen=True)
class ActivationSpec:
    """A hidden activation.

    ``module`` names the ``torch.nn`` class, built with the config keys in ``params``;
    ``gain(cfg)`` is the gain that keeps the forward variance steady (torch's
    ``calculate_gain`` convention), which fan-scaled inits multiply by; ``bounded`` is the
    output range of an activation with flat tails (sigmoid, tanh), None for the others
    (they cannot saturate); ``pointwise(cfg)`` the function itself on one float and
    ``slope(cfg)`` its derivative, for mean-field theory (:mod:`initlab.theory`) and tests
    (written out with numpy, on one float or an array; tests check them against torch).
    """

    name: str
    summary: str
    module: str
    gain: Callable[[Any], float]
    pointwise: Callable[[Any], Callable[[float], float]]
    slope: Callable[[Any], Callable[[float], float]]
    params: tuple[str, ...] = ()
    schema: type = ActConfig
    bounded: Optional[tuple[float, float]] = None
    check: Callable[[Any, Check], None] = _no_checks

    def build(self, cfg: Any):
        """The ``torch.nn`` module of this activation, configured by ``cfg``."""
        from torch import nn

        return getattr(nn, self.module)(**{key: cfg[key] for key in self.params})


class CustomActivationSpec(ActivationSpec):
    """``act=custom``: the module ``act._target_`` builds; its gain, pointwise function and
    slope are integrated over, evaluated on and differentiated through that module."""

    def build(self, cfg: Any):
        return custom.build_activation(cfg)


SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_SQRT2 = math.sqrt(2.0)


def _numeric(make: Callable[[Any, Any], Callable]) -> Callable[[Any], Callable]:
    """An activation's function from ``make(np, cfg)``, written with numpy ufuncs: it takes
    one float (and returns one) or a float64 array, so mean-field theory evaluates every
    quadrature node of every input at once (numpy is imported on first use, not here)."""

    def for_config(cfg: Any) -> Callable:
        import numpy as np

        from initlab.theory import vectorized

        f = make(np, cfg)

        def numeric(x):
            out = f(np.asarray(x, dtype=np.float64))
            return float(out) if np.ndim(out) == 0 else out

        return vectorized(numeric)

    return for_config


def _sigmoid(np: Any, x: Any) -> Any:
    e = np.exp(-np.abs(x))  # never overflows: the two halves of the logistic
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _erf(np: Any, x: Any) -> Any:
    # numpy has no erf; torch's, on float64, is the one torch.nn.GELU uses.
    import torch

    return torch.special.erf(torch.from_numpy(np.array(x, dtype=np.float64))).numpy()


def _negative(np: Any, x: Any) -> Any:
    return np.minimum(x, 0.0)  # exp of the negative part only: no overflow on the other side


# elu, gelu and silu have no closed-form gain; like ReLU they pass positive inputs and damp
# negative ones, so they get ReLU's sqrt(2), the common choice.
_ACTIVATION_LIST = [
    ActivationSpec("sigmoid", "logistic 1 / (1 + e^-x): flat tails, slope at most 1/4",
                   "Sigmoid", lambda c: 1.0, _numeric(lambda np, c: lambda x: _sigmoid(np, x)),
                   _numeric(lambda np, c: lambda x: _sigmoid(np, x) * _sigmoid(np, -x)),
                   bounded=(0.0, 1.0)),
    ActivationSpec("tanh", "hyperbolic tangent: zero-centred, flat tails", "Tanh",
                   lambda c: 5.0 / 3, _numeric(lambda np, c: np.tanh),
                   _numeric(lambda np, c: lambda x: 1 - np.tanh(x) ** 2), bounded=(-1.0, 1.0)),
    ActivationSpec("relu", "max(0, x): no flat tail above 0, zero gradient below", "ReLU",
                   lambda c: _SQRT2, _numeric(lambda np, c: lambda x: np.maximum(x, 0.0)),
                   _numeric(lambda np, c: lambda x: np.where(x > 0, 1.0, 0.0))),
    ActivationSpec("lrelu", "leaky ReLU: x above 0, negative_slope * x below", "LeakyReLU",
                   lambda c: math.sqrt(2.0 / (1 + c.negative_slope**2)),
                   _numeric(lambda np, c: lambda x, a=c.negative_slope: np.where(x >= 0, x, a * x)),
                   _numeric(lambda np, c: lambda x, a=c.negative_slope: np.where(x > 0, 1.0, a)),
                   params=("negative_slope",), schema=LeakyReLUConfig,
                   check=_minimum("act.negative_slope", 0)),
    ActivationSpec("elu", "ELU: x above 0, alpha (e^x - 1) below", "ELU", lambda c: _SQRT2,
                   _numeric(lambda np, c: lambda x, a=c.alpha:
                            np.where(x > 0, x, a * np.expm1(_negative(np, x)))),
                   _numeric(lambda np, c: lambda x, a=c.alpha:
                            np.where(x > 0, 1.0, a * np.exp(_negative(np, x)))),
                   params=("alpha",), schema=ELUConfig, check=_minimum("act.alpha", 0)),
    ActivationSpec("selu", "SELU: scaled ELU that keeps unit variance under LeCun init", "SELU",
                   lambda c: 3.0 / 4,
                   _numeric(lambda np, c: lambda x: SELU_SCALE * np.where(
                       x > 0, x, SELU_ALPHA * np.expm1(_negative(np, x)))),
                   _numeric(lambda np, c: lambda x: SELU_SCALE * np.where(
                       x > 0, 1.0, SELU_ALPHA * np.exp(_negative(np, x))))),
    ActivationSpec("gelu", "GELU: x * Phi(x)", "GELU", lambda c: _SQRT2,
                   _numeric(lambda np, c: lambda x: 0.5 * x * (1 + _erf(np, x / _SQRT2))),
                   _numeric(lambda np, c: lambda x: 0.5 * (1 + _erf(np, x / _SQRT2))
                            + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi))),
    ActivationSpec("silu", "SiLU (swish): x * sigmoid(x)", "SiLU", lambda c: _SQRT2,
                   _numeric(lambda np, c: lambda x: x * _sigmoid(np, x)),
                   _numeric(lambda np, c: lambda x: _sigmoid(np, x) * (1 + x * _sigmoid(np, -x)))),
    ActivationSpec("identity", "no activation: a deep linear network", "Identity",
                   lambda c: 1.0, _numeric(lambda np, c: lambda x: x),
                   _numeric(lambda np, c: lambda x: np.ones_like(x))),
    CustomActivationSpec(CUSTOM, "your own: act._target_ names a torch.nn.Module class or a "
                         "factory, the other keys its arguments (docs/custom_components.md)",
                         "", custom.activation_gain, custom.activation_pointwise,
                         custom.activation_slope, schema=CustomActConfig,
                         check=custom.check_activation),
]
ACTIVATIONS: dict[str, ActivationSpec] = {spec.name: spec for spec in _ACTIVATION_LIST}


def _lookup(specs: dict[str, Any], what: str) -> Callable[[str], Any]:
    """``specs[name]``, or a ValueError that lists the valid choices."""
    def spec(name: str) -> Any:
        if name not in specs:
            raise ValueError(f"unknown {what} {name!r} (choose from: {', '.join(specs)})")
        return specs[name]
    return spec


activation: Callable[[str], ActivationSpec] = _lookup(ACTIVATIONS, "activation")


# ======================================================================== init schemes
@dataclass
class InitConfig:
    name: str = MISSING
    bias: float = 0.0  # every bias starts at this constant ...
    bias_std: float = 0.0  # ... plus N(0, bias_std^2) noise, drawn per bias after the weight


@dataclass
class ConstantInitConfig(InitConfig):
    name: str = "constant"
    value: float = 0.0


@dataclass
class NormalInitConfig(InitConfig):
    name: str = "normal"
    mean: float = 0.0
    std: float = 1.0


@dataclass
class UniformInitConfig(InitConfig):
    name: str = "uniform"
    low: float = -1.0
    high: float = 1.0


@dataclass
class XavierInitConfig(InitConfig):
    gain: Optional[float] = None  # null: 1, as torch.nn.init and Glorot & Bengio


@dataclass
class KaimingInitConfig(InitConfig):
    mode: str = "fan_in"  # fan_in keeps forward variance, fan_out backward variance
    gain: Optional[float] = None  # null: the chosen activation's gain


@dataclass
class OrthogonalInitConfig(InitConfig):
    name: str = "orthogonal"
    gain: Optional[float] = None  # null: the chosen activation's gain


@dataclass
class VarianceScalingInitConfig(InitConfig):
    name: str = "variance_scaling"
    scale: float = 1.0  # Var(W) = scale / n, n the fan chosen by mode
    mode: str = "fan_in"  # fan_in | fan_out | fan_avg
    distribution: str = "truncated_normal"  # normal | truncated_normal | uniform


@dataclass
class LSUVInitConfig(InitConfig):
    name: str = "lsuv"
    tolerance: float = 0.1  # stop when |Var(output) - 1| < tolerance (the paper's Tol_var)
    max_iterations: int = 10  # per layer (the paper's T_max)
    batch_size: int = 256  # training examples (in data order) the variances are measured on


@dataclass
class CustomInitConfig(InitConfig):
    name: str = CUSTOM
    # fn(weight, generator=gen, **kwargs), filling a weight in place; the node's other keys
    # (beyond bias, bias_std) are its keyword arguments.
    _target_: str = MISSING


@dataclass(frozen=True)
class Draw:
    """The distribution one weight matrix is drawn from, in numbers (torch-free).

    kind: ``constant`` (value), ``normal`` (mean, std), ``truncated_normal`` (std of the
    underlying normal, cut at +-2 of it, mean 0), ``uniform`` (low, high), ``orthogonal``
    (gain times a random orthogonal matrix).
    """

    kind: str
    value: float = 0.0
    mean: float = 0.0
    std: float = 0.0
    low: float = 0.0
    high: float = 0.0
    gain: float = 1.0

    def second_moment(self, fan_in: int, fan_out: int) -> float:
        """E[w^2] of one entry: fan_in * E[w^2] is the sigma_w^2 of mean-field theory."""
        if self.kind == "constant":
            return self.value**2
        if self.kind == "normal":
            return self.std**2 + self.mean**2
        if self.kind == "truncated_normal":
            return (self.std * TRUNCATED_NORMAL_STD) ** 2
        if self.kind == "uniform":
            return (self.low**2 + self.low * self.high + self.high**2) / 3
        # gain * Q, Q with orthonormal rows (fan_out <= fan_in) or columns: each row or
        # column has unit norm, so the mean square entry is 1 / max(fan_in, fan_out).
        return self.gain**2 / max(fan_in, fan_out)


# Std of N(0, 1) cut to [-2, 2]; dividing by it gives a truncated normal the intended
# std (JAX's variance_scaling and Keras use this constant).
TRUNCATED_NORMAL_STD = 0.87962566103423978

FAN_MODES = ("fan_in", "fan_out")
VARIANCE_SCALING_MODES = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS = ("normal", "truncated_normal", "uniform")


def variance_scaling(scale: float, mode: str, distribution: str, fan_in: int, fan_out: int) -> Draw:
    """Var(W) = scale / n, n = fan_in, fan_out or their mean (JAX and Keras's convention)."""
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    variance = scale / n
    if distribution == "normal":
        return Draw("normal", std=math.sqrt(variance))
    if distribution == "truncated_normal":
        return Draw("truncated_normal", std=math.sqrt(variance) / TRUNCATED_NORMAL_STD)
    bound = math.sqrt(3 * variance)
    return Draw("uniform", low=-bound, high=bound)


@dataclass(frozen=True)
class InitSpec:
    """A weight init scheme.

    ``draw(cfg, gain, fan_in, fan_out)`` says what one weight matrix is drawn from;
    ``gain`` is the chosen activation's (:attr:`ActivationSpec.gain`), for the schemes that
    use it. ``shown`` are the keys the report prints beside the name; ``layer_free``: every
    layer gets the same distribution (so one histogram stands for all); ``data_dependent``:
    the scheme then looks at training data (LSUV). ``fill(weight, bias, cfg, gen)``: a
    scheme that fills the weights itself instead (``init=custom``); its ``draw`` is None,
    the distribution unknown to initlab.
    """

    name: str
    summary: str
    draw: Callable[[Any, float, int, int], Optional[Draw]]
    schema: type = InitConfig
    shown: tuple[str, ...] = ()
    layer_free: bool = False
    data_dependent: bool = False
    check: Callable[[Any, Check], None] = _no_checks
    fill: Optional[Callable[[Any, Any, Any, Any], None]] = None


def _gain(cfg: Any, default: float) -> float:
    return default if cfg.gain is None else cfg.gain


def _check_gain(cfg: Any, check: Check) -> None:
    if cfg.gain is not None:
        finite(check, "init.gain", cfg.gain)
    check(cfg.gain is None or cfg.gain > 0, f"init.gain must be > 0 or null (got {cfg.gain})")


def _check_kaiming(cfg: Any, check: Check) -> None:
    one_of(check, "init.mode", cfg.mode, FAN_MODES)
    _check_gain(cfg, check)


def _check_uniform(cfg: Any, check: Check) -> None:
    finite(check, "init.low", cfg.low)
    finite(check, "init.high", cfg.high)
    check(cfg.low < cfg.high, f"init.low must be < init.high (got {cfg.low} >= {cfg.high})")


def _check_variance_scaling(cfg: Any, check: Check) -> None:
    at_least(check, "init.scale", cfg.scale, 0, strict=True)
    one_of(check, "init.mode", cfg.mode, VARIANCE_SCALING_MODES)
    one_of(check, "init.distribution", cfg.distribution, DISTRIBUTIONS)


def _check_lsuv(cfg: Any, check: Check) -> None:
    at_least(check, "init.tolerance", cfg.tolerance, 0, strict=True)
    check(cfg.max_iterations >= 1, f"init.max_iterations must be >= 1 (got {cfg.max_iterations})")
    check(cfg.batch_size >= 2, f"init.batch_size must be >= 2 (got {cfg.batch_size})")


def _kaiming_std(cfg: Any, gain: float, fan_in: int, fan_out: int) -> float:
    return _gain(cfg, gain) / math.sqrt(fan_in if cfg.mode == "fan_in" else fan_out)


def _xavier_bound(cfg: Any, fan_in: int, fan_out: int) -> float:
    return _gain(cfg, 1.0) * math.sqrt(6.0 / (fan_in + fan_out))


_INIT_LIST = [
    InitSpec("zeros", "every weight 0: all hidden units compute the same function",
             lambda c, g, i, o: Draw("constant", value=0.0), layer_free=True),
    InitSpec("constant", "every weight = value", lambda c, g, i, o: Draw("constant", value=c.value),
             schema=ConstantInitConfig, shown=("value",), layer_free=True),
    InitSpec("normal", "W ~ N(mean, std^2), the same in every layer",
             lambda c, g, i, o: Draw("normal", mean=c.mean, std=c.std),
             schema=NormalInitConfig, shown=("mean", "std"), layer_free=True, check=_minimum("init.std", 0)),
    InitSpec("uniform", "W ~ U(low, high), the same in every layer",
             lambda c, g, i, o: Draw("uniform", low=c.low, high=c.high),
             schema=UniformInitConfig, shown=("low", "high"), layer_free=True,
             check=_check_uniform),
    InitSpec("standard_uniform",
             "W ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)): the 'standard' init of Glorot & Bengio "
             "(2010), torch.nn.Linear's default",
             lambda c, g, i, o: Draw("uniform", low=-1 / math.sqrt(i), high=1 / math.sqrt(i))),
    InitSpec("xavier_uniform", "W ~ U(-a, a), a = gain sqrt(6 / (fan_in + fan_out)) (Glorot & "
             "Bengio, 2010); gain 1 unless set",
             lambda c, g, i, o: Draw("uniform", low=-_xavier_bound(c, i, o), high=_xavier_bound(c, i, o)),
             schema=XavierInitConfig, shown=("gain",), check=_check_gain),
    InitSpec("xavier_normal", "W ~ N(0, gain^2 2 / (fan_in + fan_out)) (Glorot & Bengio, "
             "2010); gain 1 unless set",
             lambda c, g, i, o: Draw("normal", std=_gain(c, 1.0) * math.sqrt(2.0 / (i + o))),
             schema=XavierInitConfig, shown=("gain",), check=_check_gain),
    InitSpec("kaiming_uniform", "W ~ U(-b, b), b = gain sqrt(3 / fan) (He et al., 2015); the "
             "activation's gain unless set",
             lambda c, g, i, o: Draw("uniform", low=-math.sqrt(3.0) * _kaiming_std(c, g, i, o),
                                     high=math.sqrt(3.0) * _kaiming_std(c, g, i, o)),
             schema=KaimingInitConfig, shown=("mode", "gain"), check=_check_kaiming),
    InitSpec("kaiming_normal", "W ~ N(0, gain^2 / fan) (He et al., 2015); the activation's "
             "gain unless set",
             lambda c, g, i, o: Draw("normal", std=_kaiming_std(c, g, i, o)),
             schema=KaimingInitConfig, shown=("mode", "gain"), check=_check_kaiming),
    InitSpec("lecun_normal", "W ~ truncated N(0, 1 / fan_in) (LeCun et al., 1998; for SELU, "
             "Klambauer et al., 2017), as JAX and Keras",
             lambda c, g, i, o: variance_scaling(1.0, "fan_in", "truncated_normal", i, o)),
    InitSpec("variance_scaling", "Var(W) = scale / fan (fan_in, fan_out or fan_avg), normal, "
             "truncated normal or uniform: JAX and Keras's general scheme",
             lambda c, g, i, o: variance_scaling(c.scale, c.mode, c.distribution, i, o),
             schema=VarianceScalingInitConfig, shown=("scale", "mode", "distribution"),
             check=_check_variance_scaling),
    InitSpec("orthogonal", "W = gain Q, Q a random orthogonal matrix (Saxe et al., 2014); "
             "the activation's gain unless set",
             lambda c, g, i, o: Draw("orthogonal", gain=_gain(c, g)),
             schema=OrthogonalInitConfig, shown=("gain",), check=_check_gain),
    InitSpec("lsuv", "orthogonal, then each layer rescaled to unit output variance on a batch "
             "of training data (Mishkin & Matas, 2016)",
             lambda c, g, i, o: Draw("orthogonal", gain=1.0),
             schema=LSUVInitConfig, shown=("tolerance", "max_iterations"), data_dependent=True,
             check=_check_lsuv),
    InitSpec(CUSTOM, "your own: init._target_ names fn(weight, generator=gen, **kwargs) that "
             "fills a weight in place (docs/custom_components.md)",
             lambda c, g, i, o: None, schema=CustomInitConfig, check=custom.check_init,
             fill=custom.fill_weight_),
]
INITS: dict[str, InitSpec] = {spec.name: spec for spec in _INIT_LIST}


init_scheme: Callable[[str], InitSpec] = _lookup(INITS, "init scheme")


def describe_init(init_cfg: Any) -> str:
    """``name(key=value, ...)`` with the keys that define the scheme (a mapping or config)."""
    name = init_cfg.get("name", "?")
    if is_custom(name):
        return custom.describe("init", init_cfg)
    spec = INITS.get(name)
    shown = spec.shown if spec is not None else ()
    args = ", ".join(f"{k}={init_cfg[k]}" for k in shown if init_cfg.get(k) is not None)
    return f"{name}({args})" if args else name


# ========================================================================== data sets
@dataclass
class DataConfig:
    name: str = MISSING
    n_samples: int = 1000
    noise: float = 0.2
    shuffle: bool = True
    n_train: int = 640
    n_dev: int = 160
    n_test: int = 200
    dim: int = 2  # input features; the model's input size follows
    # Shift and scale every feature to mean 0, std 1 on the training split (applied to all
    # three splits with the training split's numbers).
    standardize: bool = False


@dataclass
class CirclesConfig(DataConfig):
    name: str = "circles"
    factor: float = 0.5  # radius of the inner circle relative to the outer one


@dataclass
class SpiralsConfig(DataConfig):
    name: str = "spirals"
    noise: float = 0.05  # the arms are 1/(2 turns) apart: 0.2 would blur them together
    turns: float = 1.5  # how many times each arm winds around the centre


@dataclass
class BlobsConfig(DataConfig):
    name: str = "blobs"
    separation: float = 2.0  # distance between the two class centres, in units of their std


@dataclass
class GaussianConfig(DataConfig):
    name: str = "gaussian"
    noise: float = 0.0  # label noise: the probability that a label is flipped
    # How labels are made from x ~ N(0, I): "teacher" (the sign of a random linear teacher
    # w . x, w ~ N(0, I) from the data seed) or "first" (the sign of x_1).
    rule: str = "teacher"


@dataclass
class CustomDataConfig(DataConfig):
    name: str = CUSTOM
    # fn(n_samples=, noise=, generator=, **kwargs) -> (X, y); the node's other keys (beyond
    # the data keys above) are its keyword arguments. X has data.dim columns.
    _target_: str = MISSING


@dataclass(frozen=True)
class DatasetSpec:
    """A data set: ``make(cfg, gen)`` (or the function of that name in :mod:`initlab.data`)
    returns float features (N, dim) and 0/1 labels (N,) in the order they are split;
    ``any_dim``: data.dim may be other than 2; ``shape_keys``: config keys that change the
    data's shape or meaning beyond its name (the batched launcher groups by them)."""

    name: str
    summary: str
    make: Callable[[Any, Any], tuple] | str
    schema: type = DataConfig
    any_dim: bool = False
    shape_keys: tuple[str, ...] = ()
    check: Callable[[Any, Check], None] = _no_checks


def _check_circles(cfg: Any, check: Check) -> None:
    check(0 < cfg.factor < 1, f"data.factor must be in (0, 1) (got {cfg.factor})")


GAUSSIAN_RULES = ("teacher", "first")


def _check_gaussian(cfg: Any, check: Check) -> None:
    one_of(check, "data.rule", cfg.rule, GAUSSIAN_RULES)
    check(0 <= cfg.noise <= 0.5,
          f"data.noise is the label-flip probability of gaussian data: in [0, 0.5] (got {cfg.noise})")


_DATASET_LIST = [
    DatasetSpec("moons", "the textbook's two interleaved half circles", "make_moons"),
    DatasetSpec("circles", "a circle inside a circle", "make_circles",
                schema=CirclesConfig, shape_keys=("factor",), check=_check_circles),
    DatasetSpec("xor", "points in [-1, 1]^2, label 1 where x1 * x2 > 0", "make_xor"),
    DatasetSpec("spirals", "two interleaved spiral arms", "make_spirals",
                schema=SpiralsConfig, shape_keys=("turns",), check=_minimum("data.turns", 0, strict=True)),
    DatasetSpec("blobs", "two Gaussian clouds, in any dimension", "make_blobs",
                schema=BlobsConfig, any_dim=True, shape_keys=("separation",),
                check=_minimum("data.separation", 0)),
    DatasetSpec("gaussian", "x ~ N(0, I) in any dimension, labels from a rule (a random "
                "linear teacher by default)", "make_gaussian", schema=GaussianConfig,
                any_dim=True, shape_keys=("rule",), check=_check_gaussian),
    DatasetSpec(CUSTOM, "your own: data._target_ names fn(n_samples=, noise=, generator=, "
                "**kwargs) -> (X, y) (docs/custom_components.md)", custom.make_data,
                schema=CustomDataConfig, any_dim=True, check=custom.check_data),
]
DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in _DATASET_LIST}


dataset: Callable[[str], DatasetSpec] = _lookup(DATASETS, "data set")


# The config groups whose options are specs here, with their base schemas.
OPTION_GROUPS: dict[str, dict[str, Any]] = {"act": ACTIVATIONS, "init": INITS, "data": DATASETS}
custom.OWN_KEYS.update({group: frozenset(f.name for f in fields(specs[CUSTOM].schema))
                        for group, specs in OPTION_GROUPS.items()})
BASE_SCHEMAS: dict[str, type] = {"act": ActConfig, "init": InitConfig, "data": DataConfig}


def built_in(specs: dict[str, Any]) -> dict[str, Any]:
    """The options initlab ships, without ``custom`` (whose behaviour is the user's)."""
    return {name: spec for name, spec in specs.items() if not is_custom(name)}


def schema_node(group: str, option: str) -> Any:
    """What the ConfigStore holds for an option: its schema; for ``custom`` a node that
    takes keys beyond the schema's (``act.beta=2``, Hydra's instantiate style: they are the
    target's keyword arguments)."""
    schema = OPTION_GROUPS[group][option].schema
    if not is_custom(option):
        return schema
    node = OmegaConf.structured(schema)
    OmegaConf.set_struct(node, False)
    return node


def describe_option(group: str, node: Any) -> str:
    """How tables and titles name a group's option: its name, or for a custom component its
    target and arguments (``mypkg.Swish(beta=2)``)."""
    if group == "init":
        return describe_init(node)
    name = node.get("name", "?")
    return custom.describe(group, node) if is_custom(name) else name


def schema_name(group: str, option: str) -> str:
    """The ConfigStore name of an option's schema: its YAML's first default is
    ``- /<group>_<option>_schema``."""
    return f"{group}_{option}_schema"


def input_size(config: Any) -> int:
    """A recorded config's input dimension: data.dim (records before data.dim: the model's
    in_features, else 2)."""
    data, model = config.get("data") or {}, config.get("model") or {}
    return data.get("dim", model.get("in_features", 2))
