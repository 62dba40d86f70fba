"""The MLP as stacked tensors: its layout (fc1 .. fcN, as the textbook names them), its
forward pass and its hand-written backward, for M >= 1 members at once.

Parameters are ``[W1, b1, W2, b2, ...]`` with a leading member axis: ``W_k`` is
(M, out, in), ``b_k`` (M, out). Inputs are feature-major, (M, features, examples). A single
run is M = 1; every place that runs the net (the engine, the measurements at init, the
decision-boundary figures) goes through :func:`forward` or :func:`trace`.

Hidden layer k is ``act(W_k x + b_k)``; the last layer gives one logit per example, and the
probability is ``sigmoid(logit)``: training uses BCE on the logit, the textbook's sigmoid +
BCELoss with the log computed stably.
"""

from collections.abc import Callable

import torch
from torch.nn import functional as F

from initlab.options import SELU_ALPHA, SELU_SCALE, activation


def make_activation(act_cfg) -> torch.nn.Module:
    """The hidden activation module its spec (:mod:`initlab.options`) builds from ``act_cfg``
    (for ``act=custom``, the module ``act._target_`` builds)."""
    return activation(act_cfg.name).build(act_cfg)


def activation_backward(act: torch.nn.Module) -> Callable | None:
    """``f(grad_out, z, out) -> grad_z`` for the hidden activation ``act``: the ATen
    backward kernel autograd itself calls for that module (so the activation's part of the
    gradient is bit for bit autograd's), or None for a module not listed here (then the
    engine trains through autograd). By exact type: a subclass (a custom activation deriving
    from nn.SiLU, say) may compute something else in its own forward."""
    aten = torch.ops.aten
    kind = type(act)
    if kind is torch.nn.Sigmoid:
        return lambda g, z, h: aten.sigmoid_backward(g, h)
    if kind is torch.nn.Tanh:
        return lambda g, z, h: aten.tanh_backward(g, h)
    if kind is torch.nn.ReLU:
        return lambda g, z, h: aten.threshold_backward(g, h, 0)
    if kind is torch.nn.LeakyReLU:
        slope = act.negative_slope
        return lambda g, z, h: aten.leaky_relu_backward(g, z, slope, False)
    if kind is torch.nn.ELU:
        alpha = act.alpha
        return lambda g, z, h: aten.elu_backward(g, alpha, 1, 1, False, z)
    if kind is torch.nn.SELU:
        return lambda g, z, h: aten.elu_backward(g, SELU_ALPHA, SELU_SCALE, 1, False, z)
    if kind is torch.nn.GELU:
        approximate = act.approximate
        return lambda g, z, h: aten.gelu_backward(g, z, approximate=approximate)
    if kind is torch.nn.SiLU:
        return lambda g, z, h: aten.silu_backward(g, z)
    if kind is torch.nn.Identity:
        return lambda g, z, h: g
    return None


def feature_major(act: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``act`` applied to feature-major (M, units, examples) pre-activations. initlab's own
    activations are elementwise and take them as they are; any other module (``act=custom``)
    sees (M, examples, units), the layout of an ``nn.Linear`` output, so one that is not
    elementwise (a softmax over units, say) computes what it would in a plain MLP."""
    if activation_backward(act) is not None:
        return act
    return lambda z: act(z.transpose(1, 2)).transpose(1, 2)


def parameter_shapes(model_cfg, in_features: int) -> dict[str, list[int]]:
    """{fc1.weight: [out, in], fc1.bias: [out], ...} of one member, in layer order."""
    depth = model_cfg.depth
    sizes = [in_features] + [model_cfg.width] * (depth - 1) + [1]
    shapes: dict[str, list[int]] = {}
    for k in range(1, depth + 1):
        shapes[f"fc{k}.weight"] = [sizes[k], sizes[k - 1]]
        shapes[f"fc{k}.bias"] = [sizes[k]]
    return shapes


def forward(params: list[torch.Tensor], act: Callable, x: torch.Tensor,
            hidden: list[torch.Tensor] | None = None, pre: list[torch.Tensor] | None = None
            ) -> torch.Tensor:
    """Logits (M, examples) of the stacked MLP on feature-major ``x`` (M, in, examples);
    ``act`` as :func:`feature_major` gives it. Appends each hidden layer's activations to
    ``hidden`` as (M, examples, units) views, and its pre-activations to ``pre``.

    Feature-major (W @ x, examples in the last axis) because the layers are narrow: measured
    on the 2-5-1 net (200 members, 640 examples, 1 thread, forward + backward) 2.3 ms a
    step against 6.1 ms for batch-major x @ W^T, whose tiny inner dimensions the batched
    GEMM handles badly. The one-output last layer is a product and a sum over units, bias
    added last (a batched GEMM there rounded a member blowing up to 1e29 into NaN on other
    examples than a plain ``nn.Linear`` does)."""
    depth = len(params) // 2
    for k in range(depth - 1):
        z = torch.baddbmm(params[2 * k + 1].unsqueeze(2), params[2 * k], x)
        x = act(z)
        if hidden is not None:
            hidden.append(x.transpose(1, 2))
        if pre is not None:
            pre.append(z)
    return (x * params[-2].transpose(1, 2)).sum(1) + params[-1]


def trace(params: list[torch.Tensor], act: Callable, x: torch.Tensor
          ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """(pre-activations z_l (M, units, n) of the hidden layers, their outputs h_l, logits
    (M, n)): :func:`forward` keeping what a backward pass or a measurement needs."""
    pre: list[torch.Tensor] = []
    hidden: list[torch.Tensor] = []
    logits = forward(params, act, x, hidden, pre)
    return pre, [h.transpose(1, 2) for h in hidden], logits


def member_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(M,) mean BCE-with-logits of each member."""
    return F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(1)


def correct_calls(logits: torch.Tensor, y_is_one: torch.Tensor) -> torch.Tensor:
    """(M,) correct 0.5-threshold calls of each member, as float32 (exact below 2**24)."""
    return (logits.detach() > 0).eq(y_is_one).sum(1, dtype=torch.float32)


@torch.no_grad()
def loss_and_grads(params: list[torch.Tensor], act: Callable, act_backward: Callable | None,
                   x: torch.Tensor, y: torch.Tensor):
    """(logits, per-member mean BCE loss (M,), gradient of the summed losses per parameter).

    Summing the members' losses gives each member its own gradient. With ``act_backward``
    (:func:`activation_backward`) the backward is written out: each step is the formula
    autograd's own backward uses for that op (mean, BCE with logits, the product-and-sum last
    layer, baddbmm, the activation's ATen kernel), so the gradients agree with autograd's
    to rounding (tests/test_engine.py checks every activation against plain autograd). Why:
    on a net this small the autograd engine's bookkeeping costs as much as the arithmetic
    (2-5-1 sigmoid net, 200 members, 2 threads: 2.9 ms a step through autograd, 1.3 ms by
    hand). Without it (a custom activation), autograd computes them.
    """
    if act_backward is None:
        with torch.enable_grad():
            leaves = [p.detach().requires_grad_(True) for p in params]
            logits = forward(leaves, act, x)
            loss = member_losses(logits, y)
            grads = list(torch.autograd.grad(loss.sum(), leaves))
        return logits.detach(), loss.detach(), grads
    depth = len(params) // 2
    pre, post, logits = trace(params, act, x)
    loss = member_losses(logits, y)
    # BCE's backward, sigmoid(z) - y, with the mean's 1/n applied to each gradient at the
    # end: at an exact saddle (zero init on balanced data, sigmoid(0) - y = +-0.5 on 320
    # examples each) every product and partial sum is then exact, so the gradients are
    # exactly 0, as the textbook's run shows, not a rounding residue that grows until the
    # net escapes.
    d_logits = torch.sigmoid(logits) - y
    scale = 1.0 / y.shape[1]
    grads: list[torch.Tensor] = [None] * len(params)  # type: ignore[list-item]
    grads[-1] = d_logits.sum(1, keepdim=True)
    d_sum = d_logits.unsqueeze(1)  # sum(1)'s backward, broadcast over the units
    last_input = post[-1] if post else x
    # The one-output layer's weight gradient as a product and a sum over examples, not a
    # GEMM: a GEMM kernel blocks its output columns (4 + 1 for 5 units) and rounds the
    # blocks differently, which breaks the exact symmetry of zero-initialized units.
    grads[-2] = (d_sum * last_input).sum(2, keepdim=True).transpose(1, 2)  # (M, 1, units)
    if depth > 1:
        d_x = d_sum * params[-2].transpose(1, 2)
        for k in range(depth - 2, -1, -1):
            d_z = act_backward(d_x, pre[k], post[k])
            grads[2 * k] = torch.bmm(d_z, (post[k - 1] if k else x).transpose(1, 2))
            grads[2 * k + 1] = d_z.sum(2)
            if k:
                d_x = torch.bmm(params[2 * k].transpose(1, 2), d_z)
    for g in grads:
        g.mul_(scale)
    return logits, loss, grads
