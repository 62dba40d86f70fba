"""Data sets (two moons, circles, xor) and the seeded train/dev/test split.

Every generator takes a ``torch.Generator`` so a run's data depend only on its seed.
"""

import math
from dataclasses import dataclass

import torch


@dataclass
class Splits:
    """Float32 features (N, 2) and float32 labels (N,) of each split."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_dev: torch.Tensor
    y_dev: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor

    def as_dict(self) -> dict[str, torch.Tensor]:
        return dict(vars(self))

    def to(self, device: torch.device) -> "Splits":
        return Splits(**{k: v.to(device) for k, v in vars(self).items()})


def _shuffle_and_noise(X, y, noise, shuffle, gen):
    if shuffle:
        order = torch.randperm(X.shape[0], generator=gen)
        X, y = X[order], y[order]
    if noise > 0:
        X = X + noise * torch.randn(X.shape, generator=gen)
    return X.float(), y.float()


def make_moons(n_samples: int, noise: float, shuffle: bool, gen: torch.Generator):
    """The textbook's two moons.

    Outer moon (label 0): (cos t, sin t); inner moon (label 1): (1 - cos t, 0.5 - sin t),
    with t evenly spaced on [0, pi]; then shuffled, then Gaussian noise of std ``noise``.
    """
    n_out = n_samples // 2
    n_in = n_samples - n_out
    t_out = torch.linspace(0, math.pi, n_out)
    t_in = torch.linspace(0, math.pi, n_in)
    X = torch.stack(
        [torch.cat([torch.cos(t_out), 1 - torch.cos(t_in)]),
         torch.cat([torch.sin(t_out), 0.5 - torch.sin(t_in)])],
        dim=1,
    )
    y = torch.cat([torch.zeros(n_out), torch.ones(n_in)])
    return _shuffle_and_noise(X, y, noise, shuffle, gen)


def make_circles(n_samples: int, noise: float, shuffle: bool, gen: torch.Generator,
                 factor: float = 0.5):
    """Outer circle of radius 1 (label 0) around an inner circle of radius ``factor`` (label 1)."""
    n_out = n_samples // 2
    n_in = n_samples - n_out
    t_out = torch.linspace(0, 2 * math.pi, n_out + 1)[:-1]
    t_in = torch.linspace(0, 2 * math.pi, n_in + 1)[:-1]
    X = torch.stack(
        [torch.cat([torch.cos(t_out), factor * torch.cos(t_in)]),
         torch.cat([torch.sin(t_out), factor * torch.sin(t_in)])],
        dim=1,
    )
    y = torch.cat([torch.zeros(n_out), torch.ones(n_in)])
    return _shuffle_and_noise(X, y, noise, shuffle, gen)


def make_xor(n_samples: int, noise: float, shuffle: bool, gen: torch.Generator):
    """Points uniform in [-1, 1]^2 labelled 1 where x1 * x2 > 0, then Gaussian noise."""
    X = torch.rand(n_samples, 2, generator=gen) * 2 - 1
    y = (X[:, 0] * X[:, 1] > 0).float()
    # Already in random order; shuffling again would only consume generator state.
    return _shuffle_and_noise(X, y, noise, False, gen)


def make_splits(data_cfg, seed: int) -> Splits:
    """Generate ``data_cfg.name`` with ``seed`` and split it in order: train, dev, test."""
    gen = torch.Generator().manual_seed(seed)
    common = dict(n_samples=data_cfg.n_samples, noise=data_cfg.noise,
                  shuffle=data_cfg.shuffle, gen=gen)
    if data_cfg.name == "moons":
        X, y = make_moons(**common)
    elif data_cfg.name == "circles":
        X, y = make_circles(**common, factor=data_cfg.factor)
    elif data_cfg.name == "xor":
        X, y = make_xor(**common)
    else:
        raise ValueError(f"unknown data set {data_cfg.name!r} (choose from: moons, circles, xor)")
    a = data_cfg.n_train
    b = a + data_cfg.n_dev
    c = b + data_cfg.n_test
    return Splits(X[:a], y[:a], X[a:b], y[a:b], X[b:c], y[b:c])
