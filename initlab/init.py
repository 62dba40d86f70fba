"""Drawing initial weights: the samplers in the style of ``torch.nn.init``, and ``init_linear_``.

A scheme (its spec in :mod:`initlab.options`) says what each weight matrix is drawn from
(a :class:`~initlab.options.Draw`); the samplers here fill a matrix in place (trailing
``_``) from an explicit generator, with the formula in the docstring.
``init_linear_(weight, bias, init_cfg, act_cfg, gen)`` applies the scheme to one layer's
weight and sets its bias to ``init_cfg.bias`` (plus N(0, init.bias_std^2) where that is set).
Data-dependent schemes (LSUV) finish in :func:`lsuv_` once the data are there. A custom
scheme (``init=custom``) fills each weight itself (:func:`initlab.custom.fill_weight_`),
from the same generator.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

from initlab.options import Draw, activation, init_scheme


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear weight of shape (out_features, in_features)."""
    if weight.dim() != 2:
        raise ValueError(f"expected a 2-D Linear weight, got shape {tuple(weight.shape)}")
    return weight.shape[1], weight.shape[0]


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


@torch.no_grad()
def truncated_normal_(w: torch.Tensor, std: float, gen: torch.Generator) -> torch.Tensor:
    """W ~ N(0, std^2) cut to [-2 std, 2 std], by the inverse CDF: U(Phi(-2), Phi(2)) mapped
    through sqrt(2) erfinv(2u - 1), as torch.nn.init.trunc_normal_ does it."""
    low = math.erf(-2 / math.sqrt(2.0))  # 2 Phi(-2) - 1
    w.uniform_(low, -low, generator=gen).erfinv_().mul_(std * math.sqrt(2.0))
    return w.clamp_(-2 * std, 2 * std)


def draw_(w: torch.Tensor, draw: Draw, gen: torch.Generator) -> torch.Tensor:
    """Fill ``w`` from the distribution ``draw`` describes (:class:`initlab.options.Draw`)."""
    if draw.kind == "constant":
        return zeros_(w) if draw.value == 0 else constant_(w, draw.value)
    if draw.kind == "normal":
        return normal_(w, draw.mean, draw.std, gen)
    if draw.kind == "truncated_normal":
        return truncated_normal_(w, draw.std, gen)
    if draw.kind == "uniform":
        return uniform_(w, draw.low, draw.high, gen)
    if draw.kind == "orthogonal":
        return orthogonal_(w, draw.gain, gen)
    raise ValueError(f"unknown distribution {draw.kind!r}")


def weight_draw(w_shape, init_cfg, act_cfg) -> Draw | None:
    """What a weight of shape (fan_out, fan_in) is drawn from under ``init_cfg`` (None for a
    custom scheme: initlab does not know its distribution)."""
    fan_out, fan_in = w_shape
    return init_scheme(init_cfg.name).draw(init_cfg, activation(act_cfg.name).gain(act_cfg),
                                            fan_in, fan_out)


def init_weight_(w: torch.Tensor, init_cfg, act_cfg, gen: torch.Generator,
                 bias: torch.Tensor | None = None) -> torch.Tensor:
    """Fill one weight matrix with the scheme named by ``init_cfg.name`` (a custom scheme
    is handed ``bias`` too)."""
    fans(w)  # a 2-D Linear weight
    spec = init_scheme(init_cfg.name)
    if spec.fill is not None:
        spec.fill(w, bias, init_cfg, gen)
        return w
    return draw_(w, weight_draw(tuple(w.shape), init_cfg, act_cfg), gen)


@torch.no_grad()
def init_linear_(weight: torch.Tensor, bias: torch.Tensor | None, init_cfg, act_cfg,
                 gen: torch.Generator) -> None:
    """One Linear layer: the weight by the scheme (drawing from ``gen``), the bias to the
    constant ``init_cfg.bias``. The stacked trainer fills each member's slice with it. A
    custom scheme gets the bias too, already at ``init.bias``, to leave or set."""
    if bias is not None:
        bias.fill_(init_cfg.bias)  # no draw: the weights below come from gen as before
    init_weight_(weight, init_cfg, act_cfg, gen, bias)
    if bias is not None:
        bias_std = getattr(init_cfg, "bias_std", 0.0)
        if bias_std:  # drawn after the weight, from the same generator
            bias.add_(torch.randn(bias.shape, generator=gen, dtype=bias.dtype), alpha=bias_std)


@torch.no_grad()
def lsuv_(weights: list[torch.Tensor], biases: list[torch.Tensor], act: nn.Module,
          x: torch.Tensor, init_cfg) -> list[int]:
    """Layer-sequential unit variance (Mishkin & Matas, 2016, Algorithm 1), in place.

    The weights come pre-initialized (orthogonal). Layer by layer, from the input: forward
    the batch ``x`` (examples, features) to the layer's output B_L = x W^T + b; while
    |Var(B_L) - 1| >= ``init.tolerance`` and fewer than ``init.max_iterations`` passes,
    divide W_L by sqrt(Var(B_L)). Var is over every unit and example of the batch
    (population variance, as the paper's numpy code). A layer whose output has zero or
    non-finite variance (every unit dead, say) is left as it is. Returns the passes taken
    per layer. Biases are not touched.
    """
    passes = []
    h = x
    for k, (w, b) in enumerate(zip(weights, biases)):
        done = 0
        while done < init_cfg.max_iterations:
            var = float(torch.var(F.linear(h, w, b), correction=0))
            if abs(var - 1) < init_cfg.tolerance or not math.isfinite(var) or var == 0:
                break
            w.div_(math.sqrt(var))
            done += 1
        passes.append(done)
        out = F.linear(h, w, b)
        h = act(out) if k < len(weights) - 1 else out
    return passes


def data_dependent_init_(weights: list[torch.Tensor], biases: list[torch.Tensor], act: nn.Module,
                         x_train: torch.Tensor, init_cfg) -> None:
    """Finish a data-dependent scheme (LSUV) on the weights :func:`init_linear_` drew; the
    batch is the first ``init.batch_size`` training examples, in data order."""
    if init_scheme(init_cfg.name).data_dependent:
        lsuv_(weights, biases, act, x_train[: init_cfg.batch_size], init_cfg)
