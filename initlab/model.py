"""The MLP (layers fc1 .. fcN, as the textbook names them), built from the activation specs."""

from collections.abc import Callable

import torch
from torch import nn

from initlab.options import SELU_ALPHA, SELU_SCALE, activation


def make_activation(act_cfg) -> nn.Module:
    """The hidden activation module its spec (:mod:`initlab.options`) builds from ``act_cfg``
    (for ``act=custom``, the module ``act._target_`` builds)."""
    return activation(act_cfg.name).build(act_cfg)


def activation_backward(act: nn.Module) -> Callable | None:
    """``f(grad_out, z, out) -> grad_z`` for the hidden activation ``act``: the ATen
    backward kernel autograd itself calls for that module (so the activation's part of the
    gradient is bit for bit autograd's), or None for a module not listed here (then the
    group trains through autograd). By exact type: a subclass (a custom activation deriving
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


def bounded_activation(act_cfg) -> str | None:
    """The activation's name if it has flat tails (it can saturate), else None."""
    return act_cfg.name if activation(act_cfg.name).bounded is not None else None


class MLP(nn.Module):
    """``depth`` Linear layers fc1 .. fc{depth}; ``width`` units in each hidden layer.

    Hidden layer k is ``act{k}(fc{k}(x))``; the last layer gives one logit per example.
    The probability is ``sigmoid(logit)``; training uses BCE on the logit, which is the
    textbook's sigmoid + BCELoss with the log computed stably.
    Activation modules are separate per layer (act1, act2, ...) so a forward hook can
    observe each hidden layer; they have no parameters, so the state dict holds fc* only.
    """

    def __init__(self, in_features: int, width: int, depth: int, act_cfg):
        super().__init__()
        self.depth = depth
        sizes = [in_features] + [width] * (depth - 1) + [1]
        for k in range(1, depth + 1):
            self.add_module(f"fc{k}", nn.Linear(sizes[k - 1], sizes[k]))
            if k < depth:
                self.add_module(f"act{k}", make_activation(act_cfg))
        # Fixed order for forward; a list avoids getattr on every call.
        self._layers = [getattr(self, f"fc{k}") for k in range(1, depth + 1)]
        self._acts = [getattr(self, f"act{k}") for k in range(1, depth)]

    def hidden_activations(self) -> dict[str, nn.Module]:
        """Activation module of each hidden layer, keyed by its Linear layer's name."""
        return {f"fc{k}": act for k, act in enumerate(self._acts, start=1)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for fc, act in zip(self._layers, self._acts):
            x = act(fc(x))
        return self._layers[-1](x).squeeze(-1)


def parameter_shapes(model_cfg, in_features: int) -> dict[str, list[int]]:
    """{fc1.weight: [out, in], fc1.bias: [out], ...} of :class:`MLP`, in its
    ``named_parameters`` order, without building it (the stacked trainer's layout)."""
    depth = model_cfg.depth
    sizes = [in_features] + [model_cfg.width] * (depth - 1) + [1]
    shapes: dict[str, list[int]] = {}
    for k in range(1, depth + 1):
        shapes[f"fc{k}.weight"] = [sizes[k], sizes[k - 1]]
        shapes[f"fc{k}.bias"] = [sizes[k]]
    return shapes


def build_model(model_cfg, act_cfg, in_features: int) -> MLP:
    """The MLP of ``model_cfg`` for inputs of ``in_features`` (a run's data.dim)."""
    return MLP(in_features, model_cfg.width, model_cfg.depth, act_cfg)
