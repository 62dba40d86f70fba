"""The MLP (layers fc1 .. fcN, as the textbook names them) and the activation table."""

import torch
from torch import nn

# name -> factory(act_cfg) for the hidden activation
ACTIVATION_FACTORIES = {
    "sigmoid": lambda cfg: nn.Sigmoid(),
    "tanh": lambda cfg: nn.Tanh(),
    "relu": lambda cfg: nn.ReLU(),
    "lrelu": lambda cfg: nn.LeakyReLU(cfg.negative_slope),
    "elu": lambda cfg: nn.ELU(cfg.alpha),
    "selu": lambda cfg: nn.SELU(),
    "gelu": lambda cfg: nn.GELU(),
    "silu": lambda cfg: nn.SiLU(),
    "identity": lambda cfg: nn.Identity(),
}

# Activations whose output is bounded: for these "saturated" means stuck in a flat tail.
BOUNDED_ACTIVATIONS = ("sigmoid", "tanh")


def make_activation(act_cfg) -> nn.Module:
    try:
        factory = ACTIVATION_FACTORIES[act_cfg.name]
    except KeyError:
        raise ValueError(
            f"unknown activation {act_cfg.name!r} (choose from: {', '.join(ACTIVATION_FACTORIES)})"
        ) from None
    return factory(act_cfg)


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


def parameter_shapes(model_cfg) -> dict[str, list[int]]:
    """{fc1.weight: [out, in], fc1.bias: [out], ...} of :class:`MLP`, in its
    ``named_parameters`` order, without building it (the stacked trainer's layout)."""
    depth = model_cfg.depth
    sizes = [model_cfg.in_features] + [model_cfg.width] * (depth - 1) + [1]
    shapes: dict[str, list[int]] = {}
    for k in range(1, depth + 1):
        shapes[f"fc{k}.weight"] = [sizes[k], sizes[k - 1]]
        shapes[f"fc{k}.bias"] = [sizes[k]]
    return shapes


def build_model(model_cfg, act_cfg) -> MLP:
    return MLP(model_cfg.in_features, model_cfg.width, model_cfg.depth, act_cfg)
