"""Weight initialization schemes in the style of ``torch.nn.init``, and ``apply_init``.

Each scheme fills a weight matrix in place (trailing ``_``) from an explicit generator,
with its formula in the docstring. ``apply_init(model, init_cfg, act_cfg, gen)`` applies
the chosen scheme to every Linear weight and sets every bias to ``init_cfg.bias``.
"""

import math

import torch
from torch import nn

SCHEMES = (
    "zeros",
    "constant",
    "normal",
    "uniform",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "orthogonal",
)


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear weight of shape (out_features, in_features)."""
    if weight.dim() != 2:
        raise ValueError(f"expected a 2-D Linear weight, got shape {tuple(weight.shape)}")
    return weight.shape[1], weight.shape[0]


def recommended_gain(act_cfg) -> float:
    """The gain that keeps activation variance steady through ``act`` (as torch's calculate_gain).

    sigmoid, identity: 1;  tanh: 5/3;  relu: sqrt(2);  lrelu(a): sqrt(2 / (1 + a^2));
    selu: 3/4.  elu, gelu, silu have no closed-form gain; like ReLU they pass positive
    inputs and damp negative ones, so they get ReLU's sqrt(2), the common choice.
    """
    name = act_cfg.name
    if name in ("sigmoid", "identity"):
        return 1.0
    if name == "tanh":
        return 5.0 / 3
    if name in ("relu", "elu", "gelu", "silu"):
        return math.sqrt(2.0)
    if name == "lrelu":
        return math.sqrt(2.0 / (1 + act_cfg.negative_slope**2))
    if name == "selu":
        return 3.0 / 4
    raise ValueError(f"no recommended gain for activation {name!r}")


@torch.no_grad()
def zeros_(w: torch.Tensor) -> torch.Tensor:
    """W = 0."""
    return w.zero_()


@torch.no_grad()
def constant_(w: torch.Tensor, value: float) -> torch.Tensor:
    """W = value."""
    return w.fill_(value)


@torch.no_grad()
def normal_(w: torch.Tensor, mean: float, std: float, gen: torch.Generator) -> torch.Tensor:
    """W ~ N(mean, std^2)."""
    return w.normal_(mean, std, generator=gen)


@torch.no_grad()
def uniform_(w: torch.Tensor, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    """W ~ U(low, high)."""
    return w.uniform_(low, high, generator=gen)


def xavier_uniform_(w: torch.Tensor, gain: float, gen: torch.Generator) -> torch.Tensor:
    """W ~ U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))  (Glorot & Bengio, 2010)."""
    fan_in, fan_out = fans(w)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(w, -a, a, gen)


def xavier_normal_(w: torch.Tensor, gain: float, gen: torch.Generator) -> torch.Tensor:
    """W ~ N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))  (Glorot & Bengio, 2010)."""
    fan_in, fan_out = fans(w)
    return normal_(w, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), gen)


def _kaiming_std(w: torch.Tensor, gain: float, mode: str) -> float:
    fan_in, fan_out = fans(w)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    return gain / math.sqrt(fan_in if mode == "fan_in" else fan_out)


def kaiming_uniform_(w: torch.Tensor, gain: float, mode: str, gen: torch.Generator) -> torch.Tensor:
    """W ~ U(-b, b), b = gain * sqrt(3 / fan_mode)  (He et al., 2015)."""
    bound = math.sqrt(3.0) * _kaiming_std(w, gain, mode)
    return uniform_(w, -bound, bound, gen)


def kaiming_normal_(w: torch.Tensor, gain: float, mode: str, gen: torch.Generator) -> torch.Tensor:
    """W ~ N(0, std^2), std = gain / sqrt(fan_mode)  (He et al., 2015)."""
    return normal_(w, 0.0, _kaiming_std(w, gain, mode), gen)


@torch.no_grad()
def orthogonal_(w: torch.Tensor, gain: float, gen: torch.Generator) -> torch.Tensor:
    """W = gain * Q, Q with orthonormal rows or columns: QR of a N(0, 1) matrix, signs fixed
    by diag(R) so Q is uniform over the orthogonal group (Saxe et al., 2014)."""
    rows, cols = w.shape
    flat = torch.randn(max(rows, cols), min(rows, cols), generator=gen, dtype=torch.float64)
    q, r = torch.linalg.qr(flat)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    if rows < cols:
        q = q.T
    return w.copy_(gain * q)


def init_weight_(w: torch.Tensor, init_cfg, act_cfg, gen: torch.Generator) -> torch.Tensor:
    """Fill one weight matrix with the scheme named by ``init_cfg.name``."""
    name = init_cfg.name
    if name == "zeros":
        return zeros_(w)
    if name == "constant":
        return constant_(w, init_cfg.value)
    if name == "normal":
        return normal_(w, init_cfg.mean, init_cfg.std, gen)
    if name == "uniform":
        return uniform_(w, init_cfg.low, init_cfg.high, gen)
    if name in ("xavier_uniform", "xavier_normal", "orthogonal"):
        gain = init_cfg.gain if init_cfg.gain is not None else recommended_gain(act_cfg)
        scheme = {"xavier_uniform": xavier_uniform_, "xavier_normal": xavier_normal_,
                  "orthogonal": orthogonal_}[name]
        return scheme(w, gain, gen)
    if name in ("kaiming_uniform", "kaiming_normal"):
        scheme = kaiming_uniform_ if name == "kaiming_uniform" else kaiming_normal_
        return scheme(w, recommended_gain(act_cfg), init_cfg.mode, gen)
    raise ValueError(f"unknown init scheme {name!r} (choose from: {', '.join(SCHEMES)})")


@torch.no_grad()
def init_linear_(weight: torch.Tensor, bias: torch.Tensor | None, init_cfg, act_cfg,
                 gen: torch.Generator) -> None:
    """One Linear layer: the weight by the scheme (drawing from ``gen``), the bias to the
    constant ``init_cfg.bias``. The stacked trainer fills each member's slice with it."""
    init_weight_(weight, init_cfg, act_cfg, gen)
    if bias is not None:
        bias.fill_(init_cfg.bias)


@torch.no_grad()
def apply_init(model: nn.Module, init_cfg, act_cfg, gen: torch.Generator) -> None:
    """Initialize every Linear layer of ``model`` in order (:func:`init_linear_`)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            init_linear_(module.weight, module.bias, init_cfg, act_cfg, gen)
