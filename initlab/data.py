"""The data sets' generators and the seeded train/dev/test split.

Each data set's spec (:mod:`initlab.options`) names its generator here: ``make_<name>(cfg,
gen)`` takes the data config and a ``torch.Generator``, so a run's data depend only on its
seed, and returns float32 features (N, data.dim) and 0/1 labels (N,).
"""

import math
from dataclasses import dataclass

import torch

from initlab.options import dataset


@dataclass
class Splits:
    """Float32 features (N, data.dim) and float32 labels (N,) of each split."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_dev: torch.Tensor
    y_dev: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor

    def as_dict(self) -> dict[str, torch.Tensor]:
        return dict(vars(self))


def _shuffle_and_noise(X, y, noise, shuffle, gen):
    if shuffle:
        order = torch.randperm(X.shape[0], generator=gen)
        X, y = X[order], y[order]
    if noise > 0:
        X = X + noise * torch.randn(X.shape, generator=gen)
    return X.float(), y.float()


def make_moons(cfg, gen: torch.Generator):
    """The textbook's two moons.

    Outer moon (label 0): (cos t, sin t); inner moon (label 1): (1 - cos t, 0.5 - sin t),
    with t evenly spaced on [0, pi]; then shuffled, then Gaussian noise of std ``noise``.
    """
    n_out = cfg.n_samples // 2
    n_in = cfg.n_samples - n_out
    t_out = torch.linspace(0, math.pi, n_out)
    t_in = torch.linspace(0, math.pi, n_in)
    X = torch.stack(
        [torch.cat([torch.cos(t_out), 1 - torch.cos(t_in)]),
         torch.cat([torch.sin(t_out), 0.5 - torch.sin(t_in)])],
        dim=1,
    )
    y = torch.cat([torch.zeros(n_out), torch.ones(n_in)])
    return _shuffle_and_noise(X, y, cfg.noise, cfg.shuffle, gen)


def make_circles(cfg, gen: torch.Generator):
    """Outer circle of radius 1 (label 0) around an inner circle of radius ``factor`` (label 1)."""
    factor = cfg.factor
    n_out = cfg.n_samples // 2
    n_in = cfg.n_samples - n_out
    t_out = torch.linspace(0, 2 * math.pi, n_out + 1)[:-1]
    t_in = torch.linspace(0, 2 * math.pi, n_in + 1)[:-1]
    X = torch.stack(
        [torch.cat([torch.cos(t_out), factor * torch.cos(t_in)]),
         torch.cat([torch.sin(t_out), factor * torch.sin(t_in)])],
        dim=1,
    )
    y = torch.cat([torch.zeros(n_out), torch.ones(n_in)])
    return _shuffle_and_noise(X, y, cfg.noise, cfg.shuffle, gen)


def make_xor(cfg, gen: torch.Generator):
    """Points uniform in [-1, 1]^2 labelled 1 where x1 * x2 > 0, then Gaussian noise."""
    X = torch.rand(cfg.n_samples, 2, generator=gen) * 2 - 1
    y = (X[:, 0] * X[:, 1] > 0).float()
    # Already in random order; shuffling again would only consume generator state.
    return _shuffle_and_noise(X, y, cfg.noise, False, gen)


def make_spirals(cfg, gen: torch.Generator):
    """Two interleaved arms: arm c (label c) at radius r and angle 2 pi turns r + c pi, r
    evenly spaced on (0, 1]; then shuffled, then Gaussian noise of std ``noise``."""
    n_0 = cfg.n_samples // 2
    n_1 = cfg.n_samples - n_0
    arms = []
    for label, n in ((0, n_0), (1, n_1)):
        r = torch.linspace(0, 1, n + 1)[1:]
        angle = 2 * math.pi * cfg.turns * r + label * math.pi
        arms.append(torch.stack([r * torch.cos(angle), r * torch.sin(angle)], dim=1))
    y = torch.cat([torch.zeros(n_0), torch.ones(n_1)])
    return _shuffle_and_noise(torch.cat(arms), y, cfg.noise, cfg.shuffle, gen)


def make_blobs(cfg, gen: torch.Generator):
    """Two clouds N(c, I) in ``dim`` dimensions, centres -+ separation/2 along the diagonal
    (1, ..., 1) / sqrt(dim) (so they are ``separation`` apart); then shuffled, then noise."""
    n_0 = cfg.n_samples // 2
    n_1 = cfg.n_samples - n_0
    direction = torch.full((cfg.dim,), 1 / math.sqrt(cfg.dim), dtype=torch.float64)
    X = torch.randn(cfg.n_samples, cfg.dim, generator=gen, dtype=torch.float64)
    sign = torch.cat([-torch.ones(n_0, dtype=torch.float64), torch.ones(n_1, dtype=torch.float64)])
    X = X + (cfg.separation / 2) * sign.unsqueeze(1) * direction
    y = torch.cat([torch.zeros(n_0), torch.ones(n_1)])
    return _shuffle_and_noise(X, y, cfg.noise, cfg.shuffle, gen)


def make_gaussian(cfg, gen: torch.Generator):
    """x ~ N(0, I_dim); label 1 where w . x > 0, w ~ N(0, I) drawn after x (rule=teacher),
    or where x_1 > 0 (rule=first); each label flipped with probability ``noise``."""
    X = torch.randn(cfg.n_samples, cfg.dim, generator=gen)
    if cfg.rule == "teacher":
        teacher = torch.randn(cfg.dim, generator=gen)
        y = (X @ teacher > 0).float()
    else:
        y = (X[:, 0] > 0).float()
    if cfg.noise > 0:
        flip = torch.rand(cfg.n_samples, generator=gen) < cfg.noise
        y = torch.where(flip, 1 - y, y)
    return X, y  # already in random order


def standardize(splits: "Splits") -> "Splits":
    """Every feature shifted and scaled to mean 0, std 1 on the training split; the dev and
    test splits with the training split's mean and std (a constant feature is only centred)."""
    mean = splits.X_train.mean(0)
    std = splits.X_train.std(0, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return Splits(*((v - mean) / std if k.startswith("X") else v for k, v in vars(splits).items()))


def make_splits(data_cfg, seed: int) -> Splits:
    """Generate ``data_cfg.name`` with ``seed`` and split it in order: train, dev, test."""
    gen = torch.Generator().manual_seed(seed)
    make = dataset(data_cfg.name).make
    X, y = (globals()[make] if isinstance(make, str) else make)(data_cfg, gen)
    a = data_cfg.n_train
    b = a + data_cfg.n_dev
    c = b + data_cfg.n_test
    splits = Splits(X[:a], y[:a], X[a:b], y[a:b], X[b:c], y[b:c])
    return standardize(splits) if getattr(data_cfg, "standardize", False) else splits
