"""Components of a user's own, for tests/test_custom_components.py: what ``act._target_``,
``init._target_`` and ``data._target_`` name (docs/custom_components.md has the contracts),
and deliberately wrong ones, each breaking one rule."""

import math

import numpy as np
import torch
from torch import nn


# ------------------------------------------------------------------ good ones
class Swish(nn.Module):
    """x * sigmoid(beta * x) (Ramachandran et al., 2017): SiLU at beta = 1."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.beta * x)


def make_swish(beta: float = 1.0) -> nn.Module:
    """A factory returning the module."""
    return Swish(beta)


def scaled_normal_(weight: torch.Tensor, generator: torch.Generator, scale: float = 1.0) -> None:
    """W ~ N(0, scale^2 / fan_in), in place."""
    weight.normal_(0.0, scale / math.sqrt(weight.shape[1]), generator=generator)


def uniform_with_bias_(weight: torch.Tensor, bias: torch.Tensor, generator: torch.Generator,
                       bound: float = 0.5) -> None:
    """W and b ~ U(-bound, bound): a scheme that sets the biases too."""
    weight.uniform_(-bound, bound, generator=generator)
    bias.uniform_(-bound, bound, generator=generator)


def two_rings(n_samples: int, noise: float, generator: torch.Generator, gap: float = 1.0):
    """Class 0 on the unit circle, class 1 on a circle of radius 1 + gap, in class order."""
    half = n_samples // 2
    t = 2 * math.pi * torch.rand(n_samples, generator=generator)
    r = torch.cat([torch.ones(half), torch.full((n_samples - half,), 1.0 + gap)])
    X = torch.stack([r * torch.cos(t), r * torch.sin(t)], 1)
    X = X + noise * torch.randn(X.shape, generator=generator)
    return X, torch.cat([torch.zeros(half), torch.ones(n_samples - half)])


def numpy_cube(n_samples: int, noise: float, generator: torch.Generator, dim: int):
    """NumPy arrays from a NumPy generator seeded from the torch one (reproducible too), in
    data.dim dimensions (a callable with a ``dim`` parameter gets it)."""
    rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=generator)))
    X = rng.uniform(-1, 1, size=(n_samples, dim))
    return X, (X.sum(1) > 0).astype(np.int64)


# ------------------------------------------------------------------ wrong ones
class NotAModule:
    def __init__(self, beta: float = 1.0):
        self.beta = beta


def swish_function(x):
    """An elementwise function, not a module (nor a factory of one)."""
    return x * torch.sigmoid(x)


class Pool(nn.Module):
    """Changes the shape: the mean over the last axis."""

    def forward(self, x):
        return x.mean(-1, keepdim=True)


class Softmax(nn.Module):
    """Keeps the shape but is not elementwise."""

    def forward(self, x):
        return torch.softmax(x, dim=-1)


class LearnedSwish(nn.Module):
    """Has a parameter: the state dicts would hold more than the Linear layers."""

    def __init__(self):
        super().__init__()
        self.beta = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return x * torch.sigmoid(self.beta * x)


def init_without_generator(weight):
    weight.normal_()


def init_returning_a_tensor(weight, generator):
    return torch.randn(weight.shape, generator=generator)


def init_from_the_global_stream(weight, generator):
    weight.copy_(torch.randn(weight.shape))


def data_with_three_classes(n_samples, noise, generator):
    X = torch.randn(n_samples, 2, generator=generator)
    return X, torch.arange(n_samples) % 3


def data_of_the_wrong_shape(n_samples, noise, generator):
    return torch.randn(n_samples, 2, 1, generator=generator), torch.zeros(n_samples)


def data_of_one_array(n_samples, noise, generator):
    return torch.randn(n_samples, 2, generator=generator)
