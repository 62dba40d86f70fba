"""The stacked training engine of the batched launcher: jobs of one shape trained as one model.

This module owns :func:`group_key` (which jobs may share a stacked model) and
:func:`train_group` (train them together and write each job's complete record; on a CPU a
big group in one forked process per core, :class:`_Shards`). Member k of a group is the
same experiment as job k run alone by :func:`initlab.run.run`:

- the same data, initial weights and mini-batch order: each member's data, init and
  shuffle come from its own generators on the single run's random streams, and its model
  is built and initialized by the single run's own code, then stacked on a leading member
  axis (exact by construction);
- the same loss and gradients: the members' mean BCE losses are summed, so each member's
  gradient is its solo gradient; the optimizers are torch's SGD and Adam written out with
  per-member hyper-parameters ((M, 1, 1) tensors);
- the same record: metrics, gradient norms, log-epoch statistics, checkpoints and summary
  with the recorders' own row formats (:mod:`initlab.recorders`) and the one record
  writer, plus ``"launcher": "batched"`` in summary.json;
- the same stops: a member whose loss or gradient norm turns NaN/Inf is frozen at the end
  of that epoch (its updates are masked, so its weights stay as they were at the stop),
  its record ends there with status ``diverged``; the others train on.

Only the summation order of reductions differs (batched matmul, per-member means), so the
numbers agree to float32 rounding, not bit for bit (tests/test_batched.py).

The forward pass is one ``torch.baddbmm`` per layer on (members, batch, features). It was
measured against ``torch.func.vmap`` over ``functional_call`` (2-5-1 sigmoid net, 640
examples, 1 CPU thread, forward + backward): 32 k vs 16 k model-steps/s at 16 members,
41 k vs 32 k at 256, 21 k vs 19 k at 4096; baddbmm is kept. Its backward is written out
(:func:`_loss_and_grads`, autograd's own formulas, the activation's ATen kernel) for the
activations initlab ships, since on nets this small autograd's bookkeeping cost as much as
the arithmetic; any other activation module trains through autograd.
"""

import contextlib
import gc
import itertools
import math
import os
import pickle
import queue
import signal
import socket
import struct
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from omegaconf import DictConfig
from torch.nn import functional as F

from initlab.callbacks import spread_log_epochs
from initlab.config import to_plain
from initlab.data import make_splits
from initlab.diagnose import diagnose
from initlab.init import data_dependent_init_, init_linear_
from initlab.interrupts import Interrupted, StopOnSignal
from initlab.model import activation_backward, bounded_activation, make_activation, parameter_shapes
from initlab.options import CUSTOM, OPTION_GROUPS, dataset, is_custom
from initlab.record import (
    EPOCH_CHECKPOINTS,
    STATUS_COMPLETED,
    STATUS_DIVERGED,
    STATUS_INTERRUPTED,
    STATUS_RUNNING,
    GradNormTable,
    RecordWriter,
    RunRecord,
    grad_norm_ends,
    read_overrides,
)
from initlab.recorders import (
    HISTOGRAM_BINS,
    QUANTILE_MAX_VALUES,
    WEIGHT_QUANTILES,
    GradNormRecorder,
    activation_stats_rows,
    histogram_rows,
    saturated_mask,
    unit_rows,
    weight_rows,
    weight_stats_rows,
)
from initlab.run import (
    DATA_STREAM,
    EPOCH_CHECKPOINT_COUNT,
    EPOCH_CHECKPOINT_MAX_PARAMS,
    INIT_STREAM,
    SHUFFLE_STREAM,
    _generator,
    library_versions,
    stream_seed,
)
from initlab.signal import measure as measure_signal
from initlab.signal import member_signal

LAUNCHER = "batched"  # summary.json "launcher"
# Gradient norms held on the device before one copy to the host: about 64 MB of float32.
GRAD_NORM_CHUNK_VALUES = 1 << 24
# The progress callback is called at most this often (and at the last epoch).
PROGRESS_EVERY_S = 0.2
# Records read the log-epoch views as Python lists, made this many members at a time: one
# tolist per block (not per member, layer and epoch), and a block's lists, ~8x their
# float32 values, are all that is held (measured, 256 members logged every epoch for 300:
# +60 MB while records are written, against +850 MB when every member was listed at once).
LIST_ROWS = 16
# A CPU group trains in one forked process per core (:class:`_Shards`), each with at least
# this many members (a fork costs ~10 ms, and a small stacked model is overhead-bound).
SHARD_MIN_MEMBERS = 32


def group_key(cfg: DictConfig) -> tuple:
    """Jobs with equal keys can train as one stacked model.

    The key holds what fixes the stacked shapes and the loop: architecture (act included),
    epochs, batch size, log schedule, recorders, the data set's name and split sizes, the
    optimizer kind (and Adam's betas). Everything else may differ between members: seeds,
    init scheme and its parameters, biases, learning rate, momentum, weight decay, noise.
    A job with a custom component (``act=custom``, ...) has no key: ValueError, and it trains
    alone (the stacked trainer's equivalence with a single run is tested for initlab's own
    components, and a user's may not be elementwise or seeded the way it needs).
    """
    for group in OPTION_GROUPS:
        if is_custom(cfg[group].name):
            raise ValueError(f"{group}={CUSTOM}: the stacked trainer takes initlab's own "
                             "components only")
    m, d, o, t = cfg.model, cfg.data, cfg.optim, cfg.trainer
    act = tuple(sorted(to_plain(cfg.act).items()))
    betas = tuple(o.betas) if o.name == "adam" else None
    data_shape = tuple(d[key] for key in dataset(d.name).shape_keys)
    return (
        ("model", m.name, m.depth, m.width, d.dim),
        ("act", act),
        ("trainer", t.epochs, t.batch_size, t.log_every, tuple(t.recorders), t.weights_max_params,
         bool(t.get("save_tensors", True))),
        ("data", d.name, d.n_samples, d.n_train, d.n_dev, d.n_test, d.shuffle, d.standardize,
         data_shape),
        ("optim", o.name, betas),
    )


# ------------------------------------------------------------------- the stacked model
def _forward(params: list[torch.Tensor], act: torch.nn.Module, x: torch.Tensor,
             hidden: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Logits (M, batch) of the stacked MLP; params are [W1, b1, W2, b2, ...] with a leading
    member axis, x is feature-major (M, in, batch). Appends each hidden layer's activations
    to ``hidden`` as (M, batch, units) views.

    Feature-major (W @ x, batch in the last axis) because the layers are narrow: measured
    on the 2-5-1 net (200 members, 640 examples, 1 thread, forward + backward) 2.3 ms a
    step against 6.1 ms for batch-major x @ W^T, whose tiny inner dimensions the batched
    GEMM handles badly (a 2000-epoch fit of 200 members: 14.0 s -> 8.3 s). The one-output
    last layer is a product and a sum over units, bias added last: its rounding then
    follows the single run's addmm closely enough that a member blowing up to 1e29 still
    turns NaN on the same examples (tests/test_batched.py, the diverging member); a
    batched GEMM there did not."""
    depth = len(params) // 2
    for k in range(depth):
        weight, bias = params[2 * k], params[2 * k + 1]
        if k < depth - 1:
            x = act(torch.baddbmm(bias.unsqueeze(2), weight, x))
            if hidden is not None:
                hidden.append(x.transpose(1, 2))
        else:
            x = (x * weight.transpose(1, 2)).sum(1) + bias
    return x


@torch.no_grad()
def _loss_and_grads(params: list[torch.Tensor], act: torch.nn.Module, act_backward: Callable,
                    x: torch.Tensor, y: torch.Tensor):
    """(logits, per-member mean BCE loss, gradients of the summed losses) of the stacked MLP
    — :func:`_forward` and ``torch.autograd.grad`` written out by hand.

    Each step is the formula autograd's own backward uses for that op (mean, BCE with
    logits, the product-and-sum last layer, baddbmm, the activation's ATen kernel), so the
    gradients agree with autograd's to rounding (tests/test_batched.py checks every
    activation). Why: on a net this small the autograd engine's bookkeeping costs as much
    as the arithmetic; measured on the 2-5-1 sigmoid net, 200 members, 640 examples, 2
    threads: 2.9 ms a step through autograd, 1.3 ms by hand.
    """
    depth = len(params) // 2
    inputs, pre, post = [], [], []
    for k in range(depth - 1):
        weight, bias = params[2 * k], params[2 * k + 1]
        inputs.append(x)
        z = torch.baddbmm(bias.unsqueeze(2), weight, x)
        x = act(z)
        pre.append(z)
        post.append(x)
    w_last, b_last = params[-2], params[-1]
    w_t = w_last.transpose(1, 2)
    logits = (x * w_t).sum(1) + b_last
    loss = F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(1)
    # d(sum of member means)/d logits: mean's backward (1/n) times BCE's (sigmoid(z) - y).
    d_logits = (torch.sigmoid(logits) - y) * (1.0 / y.shape[1])
    grads: list[torch.Tensor] = [None] * len(params)  # type: ignore[list-item]
    grads[-1] = d_logits.sum(1, keepdim=True)
    d_sum = d_logits.unsqueeze(1)  # sum(1)'s backward, broadcast over the units
    grads[-2] = torch.bmm(d_sum, x.transpose(1, 2))  # (M, 1, units): the units' sums over examples
    if depth > 1:
        d_x = d_sum * w_t
        for k in range(depth - 2, -1, -1):
            d_z = act_backward(d_x, pre[k], post[k])
            grads[2 * k] = torch.bmm(d_z, inputs[k].transpose(1, 2))
            grads[2 * k + 1] = d_z.sum(2)
            if k:
                d_x = torch.bmm(params[2 * k].transpose(1, 2), d_z)
    return logits, loss, grads


def _loss_and_correct(logits: torch.Tensor, y: torch.Tensor, y_is_one: torch.Tensor):
    """Per member: mean BCE-with-logits (M,) and correct 0.5-threshold calls (M,) as float32."""
    loss = F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(1)
    return loss, _correct(logits, y_is_one)


def _correct(logits: torch.Tensor, y_is_one: torch.Tensor) -> torch.Tensor:
    """Per member: correct 0.5-threshold calls (M,) as float32."""
    return (logits.detach() > 0).eq(y_is_one).sum(1, dtype=torch.float32)


def _per_member(values: list[float], like: torch.Tensor) -> torch.Tensor:
    """(M, 1, 1) float tensor of one hyper-parameter per member, on ``like``'s device."""
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, 1, 1)


def _as(h: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """View an (M, 1, 1) tensor so it broadcasts against parameter ``p`` (M, ...)."""
    return h.view((-1,) + (1,) * (p.dim() - 1))


class _StackedOptimizer:
    """torch.optim.SGD / Adam, written out with per-member hyper-parameters.

    ``step(grads, active)`` updates every member where ``active`` (M,) is true; frozen
    members keep their parameters exactly (a ``where``, since their updates may be NaN).
    """

    def __init__(self, cfgs: Sequence[DictConfig], params: list[torch.Tensor]):
        o = cfgs[0].optim
        self.kind = o.name
        self.params = params
        self.lr = _per_member([c.optim.lr for c in cfgs], params[0])
        self.wd = _per_member([c.optim.weight_decay for c in cfgs], params[0])
        self.decay = any(c.optim.weight_decay != 0 for c in cfgs)
        if self.kind == "sgd":
            moms = [c.optim.momentum for c in cfgs]
            self.momentum = _per_member(moms, params[0])
            self.use_momentum = any(m != 0 for m in moms)
            # torch's SGD keeps no buffer at momentum 0; where 0·buf could be NaN, use d_p.
            self.no_momentum = self.momentum == 0 if not all(moms) else None
            self.bufs: list[torch.Tensor | None] = [None] * len(params)
        else:
            self.betas = tuple(o.betas)
            self.eps = 1e-8  # torch.optim.Adam's default, as initlab.run.make_optimizer leaves it
            self.t = 0
            self.exp_avg = [torch.zeros_like(p) for p in params]
            self.exp_avg_sq = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor], active: torch.Tensor | None) -> None:
        if self.kind == "adam":
            self.t += 1
            beta1, beta2 = self.betas
            bias_correction1 = 1 - beta1**self.t
            bias_correction2_sqrt = math.sqrt(1 - beta2**self.t)
        for i, (p, g) in enumerate(zip(self.params, grads)):
            lr = _as(self.lr, p)
            d_p = g + _as(self.wd, p) * p if self.decay else g
            if self.kind == "sgd":
                if self.use_momentum:
                    buf = self.bufs[i]
                    if buf is None:  # first step: buf = d_p, as torch's SGD
                        buf = d_p.clone()
                    else:
                        buf = buf * _as(self.momentum, p) + d_p
                        if self.no_momentum is not None:
                            buf = torch.where(_as(self.no_momentum, p), d_p, buf)
                    self.bufs[i] = buf
                    d_p = buf
                update = lr * d_p
            else:
                m, v = self.exp_avg[i], self.exp_avg_sq[i]
                m.lerp_(d_p, 1 - beta1)
                v.mul_(beta2).addcmul_(d_p, d_p, value=1 - beta2)
                denom = (v.sqrt() / bias_correction2_sqrt).add_(self.eps)
                update = (lr / bias_correction1) * m / denom
            if active is None:
                p.sub_(update)
            else:
                p.copy_(torch.where(_as(active, p), p - update, p))


# --------------------------------------------------------------------- log-epoch views
def _histograms(a: torch.Tensor, bins: int) -> torch.Tensor:
    """(M, 2 + bins): per member [low, high, counts] of ``a``'s finite values over their own
    range, as recorders.histogram_on_own_range computes for one model (histc's binning)."""
    a = a.flatten(1).float()
    finite = torch.isfinite(a)
    low = torch.where(finite, a, torch.inf).amin(1)
    high = torch.where(finite, a, -torch.inf).amax(1)
    span = (high - low).clamp_min(torch.finfo(torch.float32).tiny)
    x = (a - low[:, None]) / span[:, None]
    inside = (x >= 0) & (x <= 1)  # NaN and the non-finite values fall outside
    index = (torch.where(inside, x, 0.0) * bins).long().clamp_(max=bins - 1)
    counts = torch.zeros(a.shape[0], bins, device=a.device).scatter_add_(1, index, inside.float())
    return torch.cat((low[:, None], high[:, None], counts), 1)


@dataclass
class _Snapshot:
    """Host copies of some members' log-epoch views (or parameters) at one epoch."""

    epoch: int
    position: dict[int, int]  # member index -> row in the tensors below
    views: dict[str, torch.Tensor]
    lists: dict[str, tuple[int, list]] = field(default_factory=dict)

    def row(self, name: str, row: int) -> list:
        """Row ``row`` of ``views[name]`` as a Python list, from the block of LIST_ROWS rows
        made with one ``tolist``; only the block in use is kept."""
        start, block = self.lists.get(name, (-1, []))
        if not start <= row < start + len(block):
            start = row - row % LIST_ROWS
            block = self.views[name][start:start + LIST_ROWS].tolist()
            self.lists[name] = start, block
        return block[row - start]


class _Listed(list):
    """A list the recorders' row formats read as they read a tensor (``.tolist()``)."""

    def tolist(self) -> list:
        return self


@dataclass
class _Member:
    cfg: DictConfig
    writer: RecordWriter
    summary: dict[str, Any]
    n_train: int
    n_dev: int
    overrides: list[str] | None  # None: read .hydra/overrides.yaml
    data: dict[str, torch.Tensor]  # data.pt's tensors, for the diagnosis


class StackedGroup:
    """The stacked state of one group: data, parameters, optimizer, recorder buffers."""

    def __init__(self, cfgs: Sequence[DictConfig], device: torch.device):
        cfg = cfgs[0]
        t = cfg.trainer
        self.device = device
        self.M = len(cfgs)
        self.epochs = t.epochs
        self.log_every = t.log_every
        recorders = set(t.recorders)
        # The single run's layout (initlab.model.MLP) and its init, member by member, each
        # from its own generator, straight into the member's slice of the stacked tensors
        # (no nn.Module per member: a 10,000-member group builds none).
        self.shapes = parameter_shapes(cfg.model, cfg.data.dim)
        self.names = list(self.shapes)
        self.n_params = sum(math.prod(shape) for shape in self.shapes.values())
        stacked_init = [torch.empty(self.M, *shape) for shape in self.shapes.values()]
        splits, cache = [], {}
        self.act = make_activation(cfg.act)
        for i, c in enumerate(cfgs):
            splits.append(_member_data(c, cache))
            init, act = _plain_node(c.init), _plain_node(c.act)
            gen = _generator(c.seed, INIT_STREAM)
            for k in range(0, len(stacked_init), 2):
                init_linear_(stacked_init[k][i], stacked_init[k + 1][i], init, act, gen)
            # LSUV looks at the member's own training data, with the single run's code.
            data_dependent_init_([w[i] for w in stacked_init[0::2]],
                                 [b[i] for b in stacked_init[1::2]], self.act,
                                 splits[-1].X_train, init)
        self.splits = splits
        self.params = [p.to(device).requires_grad_(True) for p in stacked_init]
        self.layer_names = [name.removesuffix(".weight") for name in self.names[0::2]]
        self.layer_shapes = [tuple(shape) for shape in list(self.shapes.values())[0::2]]
        self.act_backward = activation_backward(self.act)
        self.bounded = bounded_activation(cfg.act)
        self.layers = [name.removesuffix(".weight") for name in self.names[:-2:2]]

        def stacked(key: str) -> torch.Tensor:
            return torch.stack([getattr(s, key) for s in splits]).to(device)

        self.data = {key: stacked(key) for key in vars(splits[0])}
        # The inputs feature-major, as _forward takes them: (M, features, examples).
        self.xT = {split: self.data[f"X_{split}"].transpose(1, 2).contiguous()
                   for split in ("train", "dev", "test")}
        self.is_one = {key: self.data[f"y_{key}"] > 0.5 for key in ("train", "dev")}
        # Signal propagation at init, every member at once (initlab.signal), as the single
        # run measures it.
        self.init_signal = {k: v.cpu() for k, v in measure_signal(
            [p.detach() for p in self.params], self.act, self.act_backward, self.xT["train"],
            self.data["y_train"]).items()}
        n = self.data["X_train"].shape[1]
        self.batch_size = n if t.batch_size is None else min(t.batch_size, n)
        self.steps_per_epoch = math.ceil(n / self.batch_size)
        self.shuffle_gens = ([_generator(c.seed, SHUFFLE_STREAM) for c in cfgs]
                             if self.batch_size < n else None)
        self.optimizer = _StackedOptimizer(cfgs, self.params)

        self.record_grad_norms = "grad_norms" in recorders
        self.record_weights = "weights" in recorders and self.n_params <= t.weights_max_params
        self.record_weight_stats = "weights" in recorders
        self.record_activations = "activations" in recorders
        self.weight_names = [n for n in self.names if n.endswith("weight")]
        self.save_tensors = bool(t.get("save_tensors", True))
        self.checkpoint_epochs = (
            frozenset(spread_log_epochs(t.log_every, t.epochs, EPOCH_CHECKPOINT_COUNT))
            if self.n_params <= EPOCH_CHECKPOINT_MAX_PARAMS and self.save_tensors else None)

        # Gradient norms: a device buffer of whole epochs, copied to the host when full.
        P, spe = len(self.names), self.steps_per_epoch
        epochs_per_chunk = max(1, GRAD_NORM_CHUNK_VALUES // (self.M * P * spe))
        chunk_steps = spe * min(epochs_per_chunk, t.epochs)
        self.grad_norms = (torch.empty(chunk_steps, self.M, P, device=device)
                           if self.record_grad_norms else None)
        self.grad_slot = 0
        self.grad_chunks: list[torch.Tensor] = []  # host (steps, M, P)

        self.metrics = torch.empty(t.epochs, 4, self.M)  # host: train loss/correct, dev loss/correct
        self.best_correct = torch.full((self.M,), -1.0)
        self.best_epoch = torch.zeros(self.M, dtype=torch.long)
        self.best = [p.detach().clone() for p in self.params]
        self.init_state = [p.detach().to("cpu", copy=True) for p in self.params]
        self.logs: list[_Snapshot] = []
        self.checkpoints: list[_Snapshot] = []
        # How each member's fit ended (set by fit).
        self.epochs_run = [0] * self.M
        self.stop_reason: list[str | None] = [None] * self.M
        self.status = [STATUS_COMPLETED] * self.M

    # --------------------------------------------------------------------- the fit
    def fit(self, stop_on_signal: StopOnSignal | None = None,
            progress: Callable[[int, int], None] | None = None) -> float:
        """Train every member until its last epoch or its stop; returns the seconds spent.

        Each epoch makes one host copy of (5, M) numbers, as the single trainer makes one of
        4: the metrics, and whether each member's gradient norms stayed finite.
        """
        M = self.M
        active = torch.ones(M, dtype=torch.bool)  # host copy of who still trains
        active_dev: torch.Tensor | None = None  # None while every member trains (no masking)
        started = time.perf_counter()
        if self.checkpoint_epochs is not None and 0 in self.checkpoint_epochs:
            self.checkpoint(0, active)
        self.measure(0, active)
        last_progress = 0.0
        epoch = 0
        for epoch in range(1, self.epochs + 1):
            host = self.train_epoch(active_dev).cpu()
            self.metrics[epoch - 1] = host[:4]
            train_loss, _, dev_loss, dev_correct, grads_finite = host
            improved = active & (dev_correct > self.best_correct)
            if improved.any():
                self.best_correct = torch.where(improved, dev_correct, self.best_correct)
                self.best_epoch[improved] = epoch
                self.update_best(improved)
            finite = (grads_finite > 0) & torch.isfinite(train_loss) & torch.isfinite(dev_loss)
            stopping = active & ~finite
            for m in stopping.nonzero().squeeze(1).tolist():
                # The trainer's order: a bad gradient precedes the losses its step spoils.
                if grads_finite[m] == 0:
                    reason = f"non-finite gradient norms at epoch {epoch}"
                elif not math.isfinite(train_loss[m]):
                    reason = f"non-finite training loss at epoch {epoch}"
                else:
                    reason = f"non-finite dev loss at epoch {epoch}"
                self.stop_reason[m], self.status[m] = reason, STATUS_DIVERGED
            if stop_on_signal is not None and stop_on_signal.received is not None:
                for m in active.nonzero().squeeze(1).tolist():
                    if self.stop_reason[m] is None:
                        self.stop_reason[m] = f"interrupted by {stop_on_signal.name} at epoch {epoch}"
                    self.status[m] = STATUS_INTERRUPTED
                stopping = active.clone()
            # Log epochs as LogSchedule.due has them; a member that stops is logged then.
            due = epoch % self.log_every == 0 or epoch == self.epochs
            logged = active if due else stopping
            if logged.any():
                self.measure(epoch, logged)
            if self.checkpoint_epochs is not None:
                saved = active if epoch in self.checkpoint_epochs else stopping
                if saved.any():
                    self.checkpoint(epoch, saved)
            self.flush_grad_norms()
            if stopping.any():
                for m in stopping.nonzero().squeeze(1).tolist():
                    self.epochs_run[m] = epoch
                active = active & ~stopping
                active_dev = active.to(self.device)
            now = time.monotonic()
            if progress is not None and (now - last_progress >= PROGRESS_EVERY_S
                                         or epoch == self.epochs or not active.any()):
                last_progress = now
                progress(epoch, self.epochs)
            if not active.any():
                break
        for m in active.nonzero().squeeze(1).tolist():
            self.epochs_run[m] = epoch
        self.flush_grad_norms(force=True)
        return time.perf_counter() - started

    # ---------------------------------------------------------------- one epoch
    def _batches(self):
        X, y, y1 = self.xT["train"], self.data["y_train"], self.is_one["train"]
        if self.shuffle_gens is None:
            yield X, y, y1  # full batch, in data order, as the single run trains
            return
        n = y.shape[1]
        # Each member's own generator, consumed exactly as initlab.trainer does.
        order = torch.stack([torch.randperm(n, generator=g) for g in self.shuffle_gens]).to(self.device)
        for idx in order.split(self.batch_size, dim=1):
            xb = X.gather(2, idx.unsqueeze(1).expand(-1, X.shape[1], -1))
            yield xb, y.gather(1, idx), y1.gather(1, idx)

    def train_epoch(self, active: torch.Tensor | None):
        """One pass; returns per-member (train loss, train correct, dev loss, dev correct,
        gradient norms all finite) as a (5, M) device tensor."""
        loss_total = correct_total = None
        epoch_start = self.grad_slot
        for xb, yb, yb1 in self._batches():
            if self.act_backward is None:
                loss, correct = _loss_and_correct(_forward(self.params, self.act, xb), yb, yb1)
                grads = torch.autograd.grad(loss.sum(), self.params)
            else:
                logits, loss, grads = _loss_and_grads(self.params, self.act, self.act_backward,
                                                      xb, yb)
                correct = _correct(logits, yb1)
            if self.grad_norms is not None:
                self.grad_norms[self.grad_slot] = torch.stack(
                    [torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads], 1)
                self.grad_slot += 1
            self.optimizer.step(grads, active)
            weighted = loss.detach() * yb.shape[1]
            if loss_total is None:
                loss_total, correct_total = weighted, correct
            else:
                loss_total, correct_total = loss_total + weighted, correct_total + correct
        n_train = self.data["y_train"].shape[1]
        train_loss = loss.detach() if self.steps_per_epoch == 1 else loss_total / n_train
        with torch.no_grad():
            dev_loss, dev_correct = _loss_and_correct(
                _forward(self.params, self.act, self.xT["dev"]), self.data["y_dev"],
                self.is_one["dev"])
        if self.grad_norms is not None:
            epoch_norms = self.grad_norms[epoch_start:self.grad_slot]
            # As GradNormRecorder: past max_epoch_values norms the check goes through their sum.
            if epoch_norms.shape[0] * epoch_norms.shape[2] > GradNormRecorder.max_epoch_values:
                finite = torch.isfinite(epoch_norms.sum((0, 2)))
            else:
                finite = torch.isfinite(epoch_norms).all(2).all(0)
        else:
            finite = torch.ones(self.M, dtype=torch.bool, device=self.device)
        return torch.stack((train_loss, correct_total, dev_loss, dev_correct, finite.float()))

    def flush_grad_norms(self, force: bool = False) -> None:
        if self.grad_norms is not None and self.grad_slot and (
                force or self.grad_slot == self.grad_norms.shape[0]):
            self.grad_chunks.append(self.grad_norms[:self.grad_slot].to("cpu", copy=True))
            self.grad_slot = 0

    def member_major(self) -> dict[str, torch.Tensor]:
        """The host metrics (M, epochs, 4) and gradient norms (M, steps, params), member-major:
        one member's rows are then one contiguous block for its record."""
        out = {"metrics": self.metrics.permute(2, 0, 1).contiguous()}
        if self.grad_chunks:
            out["grad_norms"] = torch.cat(self.grad_chunks).permute(1, 0, 2).contiguous()
        else:
            out["grad_norms"] = torch.empty(self.M, 0, len(self.names))
        return out

    @torch.no_grad()
    def update_best(self, improved: torch.Tensor) -> None:
        mask = improved.to(self.device)
        for best, p in zip(self.best, self.params):
            best.copy_(torch.where(_as(mask, p), p, best))

    # ------------------------------------------------------------ log epochs
    @torch.no_grad()
    def measure(self, epoch: int, members: torch.Tensor) -> None:
        """The log-epoch views of ``members`` (host bool (M,)), as the single run's
        WeightRecorder, WeightStatsRecorder and ActivationRecorder measure them."""
        idx = members.nonzero().squeeze(1)
        everyone = idx.numel() == self.M
        idx_dev = idx.to(self.device)
        params = self.params if everyone else [p[idx_dev] for p in self.params]
        views: dict[str, torch.Tensor] = {}
        if self.record_weights:
            views["weights"] = torch.cat([p.flatten(1) for p in params], 1)
        if self.record_weight_stats:
            q = torch.tensor(WEIGHT_QUANTILES, device=self.device)
            rows = []
            for name, p in zip(self.names, params):
                if name.endswith("weight"):
                    w = p.flatten(1).float()
                    if w.shape[1] > QUANTILE_MAX_VALUES:
                        w = w[:, :: -(-w.shape[1] // QUANTILE_MAX_VALUES)]
                    rows.append(torch.quantile(w, q, dim=1).T)
            views["weight_stats"] = torch.stack(rows, 1)
        if self.record_activations and self.layers:
            X = self.xT["train"] if everyone else self.xT["train"][idx_dev]
            hidden: list[torch.Tensor] = []
            _forward(params, self.act, X, hidden)
            units, stats, hists = [], [], []
            for a in hidden:
                active = (a != 0).float().mean(1)
                saturated = saturated_mask(a, self.bounded)
                saturated = (saturated.float().mean(1) if saturated is not None
                             else torch.full_like(active, float("nan")))
                u = torch.stack((active, saturated), 2)  # (m, units, 2)
                std, mean = torch.std_mean(a.flatten(1), dim=1, correction=0)
                frac_active, frac_saturated = u.mean(1).unbind(1)
                units.append(u)
                stats.append(torch.stack((mean, std, 1 - frac_active, frac_saturated), 1))
                hists.append(_histograms(a, HISTOGRAM_BINS))
            views["units"] = torch.stack(units, 1)
            views["activations"] = torch.stack(stats, 1)
            views["activation_hists"] = torch.stack(hists, 1)
        if views:
            self.logs.append(_Snapshot(epoch, _positions(idx), {k: v.cpu() for k, v in views.items()}))

    @torch.no_grad()
    def checkpoint(self, epoch: int, members: torch.Tensor) -> None:
        idx = members.nonzero().squeeze(1)
        idx_dev = idx.to(self.device)
        views = {name: p[idx_dev].cpu() for name, p in zip(self.names, self.params)}
        self.checkpoints.append(_Snapshot(epoch, _positions(idx), views))

    @torch.no_grad()
    def final_metrics(self) -> dict[str, torch.Tensor]:
        """Per split: (2, M) host tensor of loss and correct of the best-on-dev parameters."""
        out = {}
        for split in ("train", "dev", "test"):
            y = self.data[f"y_{split}"]
            loss, correct = _loss_and_correct(
                _forward(self.best, self.act, self.xT[split]), y, y > 0.5)
            out[split] = torch.stack((loss, correct)).cpu()
        return out


def _plain_node(node: Any) -> Any:
    """A config node read attribute by attribute many times (an init per layer and member):
    as a plain namespace, since a DictConfig lookup costs ~10 us."""
    return SimpleNamespace(**to_plain(node)) if isinstance(node, DictConfig) else node


def _member_data(cfg: Any, cache: dict) -> Any:
    """The member's splits, as the single run makes them; members with the same data config
    and seed (a learning-rate sweep) share one copy."""
    seed = stream_seed(cfg.seed, DATA_STREAM)
    data = cfg.data
    key = (seed, tuple(sorted((k, repr(v)) for k, v in to_plain(data).items())))
    if key not in cache:
        cache[key] = make_splits(data, seed)
    return cache[key]


def _positions(idx: torch.Tensor) -> dict[int, int]:
    return {m: row for row, m in enumerate(idx.tolist())}


def _state(names: list[str], stacked: Sequence[torch.Tensor], row: int) -> dict[str, torch.Tensor]:
    # clone: a saved view would drag the whole stacked storage into the file.
    return {name: t[row].clone() for name, t in zip(names, stacked)}


# ------------------------------------------------------------------------ the entry point
def train_group(
    cfgs: Sequence[DictConfig],
    out_dirs: Sequence[Path],
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
    on_member_done: Callable[[int, dict], None] | None = None,
    overrides: Sequence[Sequence[str]] | None = None,
    threads: int | None = None,
) -> list[dict]:
    """Train ``cfgs`` (composed, validated configs with one :func:`group_key`) as one stacked
    model on ``device`` and write job i's complete record into ``out_dirs[i]``, as
    :func:`initlab.run.run` would. ``progress(epochs_done, epochs)`` is called at most every
    PROGRESS_EVERY_S seconds and at the end; ``on_member_done(i, summary)`` once job i's
    record is complete, in member order. SIGINT/SIGTERM stop every member after the current
    epoch (status ``interrupted``), a second one aborts at once. ``overrides``: job i's
    command-line overrides, as its .hydra/overrides.yaml holds them (default: read from
    there), for the record the diagnosis sees. ``threads``: CPU cores for the group
    (default: the first job's trainer.threads); a CPU group of at least 2 ×
    SHARD_MIN_MEMBERS members trains in one process per core (:class:`_Shards`). Returns the
    members' summaries.
    """
    if len(cfgs) != len(out_dirs) or not cfgs:
        raise ValueError(f"train_group needs one out_dir per config (got {len(cfgs)} configs, "
                         f"{len(out_dirs)} out_dirs)")
    keys = {group_key(c) for c in cfgs}
    if len(keys) != 1:
        raise ValueError(f"train_group got configs of {len(keys)} different group keys")
    dev = torch.device(device)
    threads = cfgs[0].trainer.threads if threads is None else threads
    shards = _shard_count(dev, len(cfgs), threads or 1)
    members = list(zip(cfgs, out_dirs, overrides if overrides is not None else [None] * len(cfgs)))
    if shards == 1:
        if dev.type == "cpu" and threads is not None:
            torch.set_num_threads(threads)
        with StopOnSignal() as stop_on_signal:
            return _train_shard(members, dev, stop_on_signal, progress, on_member_done,
                                library_versions())
    with _Shards(members, shards, threads or 1, progress, on_member_done) as sharded:
        return sharded.train()


def _shard_count(dev: torch.device, members: int, threads: int) -> int:
    """How many processes train this group: one per core on a CPU, each with at least
    SHARD_MIN_MEMBERS members; one on a GPU (CUDA does not survive a fork)."""
    if dev.type != "cpu" or not hasattr(os, "fork") or sys.platform != "linux":
        return 1
    return max(1, min(threads, members // SHARD_MIN_MEMBERS))


def _train_shard(members: Sequence[tuple[DictConfig, Path, Sequence[str] | None]], dev: torch.device,
                 stop_on_signal: Any, progress: Callable[[int, int], None] | None,
                 on_member_done: Callable[[int, dict], None] | None,
                 versions: dict[str, str]) -> list[dict]:
    """Train ``members`` (config, run folder, overrides) as one stacked model in this
    process and write their records in order, ``on_member_done(i, summary)`` after each."""
    started = time.perf_counter()
    cfgs = [cfg for cfg, _, _ in members]
    group = StackedGroup(cfgs, dev)
    states = []
    for (cfg, out_dir, overrides), splits in zip(members, group.splits):
        writer = RecordWriter(Path(out_dir))
        summary: dict[str, Any] = {
            "status": STATUS_RUNNING,
            "seed": cfg.seed,
            "device": str(dev),
            "config": to_plain(cfg),
            "versions": versions,
            "process": {"pid": os.getpid(), "host": socket.gethostname()},
            "epochs_run": 0,
            "launcher": LAUNCHER,
        }
        # Compact: this "running" summary lasts only as long as training (the C encoder;
        # the indented one is ~10x slower and a group writes thousands).
        writer.write_summary(summary, indent=None)
        data = {k: v.contiguous() for k, v in splits.as_dict().items()}
        states.append(_Member(cfg, writer, summary, splits.X_train.shape[0], splits.X_dev.shape[0],
                              None if overrides is None else [str(o) for o in overrides], data))

    train_s = group.fit(stop_on_signal, progress)
    setup_s = time.perf_counter() - started - train_s
    final = group.final_metrics()
    per_member = group.member_major()
    last = [p.detach().cpu() for p in group.params]
    best = [b.cpu() for b in group.best]
    summaries = []
    with _gc_frozen():
        for i, member in enumerate(states):
            record_started = time.perf_counter()
            _write_member(group, i, member, final, last, best, stop_on_signal.signal, per_member)
            now = time.perf_counter()
            # This member's share of the group's setup and training, plus its own record.
            member.summary["timing"] = {
                "train_s": train_s / group.M, "record_s": now - record_started,
                "total_s": (setup_s + train_s) / group.M + now - record_started}
            member.writer.write_summary(member.summary)
            summaries.append(member.summary)
            if on_member_done is not None:
                on_member_done(i, member.summary)
    return summaries


@contextlib.contextmanager
def _gc_frozen():
    """Everything alive now (the group's snapshots, the configs, the summaries) out of the
    cyclic garbage collector's sight while records are written: their millions of rows
    trigger collections, and each would walk those long-lived objects again (measured on
    100 textbook records: 24 -> 20 ms a record). What the records make is still collected."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class ShardError(RuntimeError):
    """A forked shard failed: the jobs whose records it had not finished fail, in one line."""


class _ParentStop:
    """A shard's stop signal, set by the process that forked it (:class:`_SharedStop`): the
    shard ignores SIGINT/SIGTERM itself, so a Ctrl-C, which reaches every process of the
    terminal's group, counts once. When that process is gone (killed), the shard stops as
    if signalled and completes its records. Read once an epoch by the fit, ``received``
    raises :class:`Interrupted` once the parent has aborted (its second signal)."""

    def __init__(self, control: "_Control", parent: int):
        self.control, self.parent = control, parent
        self.parent_gone = False

    @property
    def received(self) -> int | None:
        if self.control.aborted:
            raise Interrupted(self.control.stop or signal.SIGTERM)
        if self.control.stop:
            return self.control.stop
        if not self.parent_gone and os.getppid() != self.parent:
            self.parent_gone = True
        return -1 if self.parent_gone else None

    @property
    def name(self) -> str:
        stop = self.control.stop
        return signal.Signals(stop).name if stop else "the end of its launcher process"

    @property
    def signal(self) -> str | None:
        return signal.Signals(self.control.stop).name if self.control.stop else None


class _Control:
    """Words shared by a sharded group's processes (an anonymous mmap, shared after fork):
    the stop signal, the abort flag and each shard's epochs done."""

    def __init__(self, shards: int):
        import mmap

        self.memory = mmap.mmap(-1, 8 * (2 + shards))

    def _get(self, slot: int) -> int:
        return struct.unpack_from("q", self.memory, 8 * slot)[0]

    def _set(self, slot: int, value: int) -> None:
        struct.pack_into("q", self.memory, 8 * slot, value)

    stop = property(lambda self: self._get(0), lambda self, v: self._set(0, v))
    aborted = property(lambda self: bool(self._get(1)), lambda self, v: self._set(1, int(v)))

    def epochs(self, shard: int) -> int:
        return self._get(2 + shard)

    def set_epochs(self, shard: int, epochs: int) -> None:
        self._set(2 + shard, epochs)


class _SharedStop(StopOnSignal):
    """This process's StopOnSignal, which also tells the shards (:class:`_ParentStop`)."""

    def __init__(self, control: _Control):
        super().__init__()
        self.control = control

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            self.control.stop = signum
        else:
            self.control.aborted = True
        super()._handle(signum, frame)


class _Shards:
    """A CPU group trained in ``shards`` processes: this one and forked copies, each
    training a contiguous slice of the members as its own stacked model (``threads //
    shards`` torch threads each) and writing their records. Why: the training loop is one
    Python thread issuing small tensor ops, which a second torch thread speeds up little;
    measured on 2 cores, 200 textbook members for 2000 epochs: 8.6-9.1 s in one process
    with 2 threads, 6.5-6.9 s in two processes of 100 members with 1 (and the records are
    written two at a time).

    Each shard sends a summary back through its pipe as soon as the record is complete;
    they are reported in member order. A shard that fails, this one included, fails the
    jobs whose records it had not finished, after the others finished theirs
    (:class:`ShardError` for a forked one, in one line); one signal stops every shard
    after its epoch, a second aborts them at once.
    """

    def __init__(self, members: list, shards: int, threads: int,
                 progress: Callable[[int, int], None] | None,
                 on_member_done: Callable[[int, dict], None] | None):
        self.members, self.progress, self.on_member_done = members, progress, on_member_done
        self.bounds = [round(k * len(members) / shards) for k in range(shards + 1)]
        self.threads = max(1, threads // shards)
        self.control = _Control(shards)
        self.children: list[int] = []
        self.exit_codes: dict[int, str] = {}
        self.read_fds: list[int] = []
        self.inbox: queue.Queue = queue.Queue()
        self.readers: list[threading.Thread] = []
        self.epochs = members[0][0].trainer.epochs

    def __enter__(self) -> "_Shards":
        self.previous_threads = torch.get_num_threads()
        self.stop = _SharedStop(self.control).__enter__()
        torch.set_num_threads(self.threads)
        self.versions = library_versions()
        parent = os.getpid()
        try:
            for shard in range(1, len(self.bounds) - 1):
                self._fork(shard, parent)
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def _fork(self, shard: int, parent: int) -> None:
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        # No signal between the fork and the shard's own handling (it ignores them), nor
        # between the fork and this process knowing the shard's pid.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, StopOnSignal.SIGNALS)
        pid = -1
        try:
            with warnings.catch_warnings():
                # Python >= 3.12 warns of fork() beside threads (a progress bar's); the
                # shard takes no lock they hold: it trains, writes files, then _exits.
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:  # the shard: never returns
                code = 1
                try:
                    for signum in StopOnSignal.SIGNALS:  # its stop comes from the parent
                        signal.signal(signum, signal.SIG_IGN)
                    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
                    # The other shards' pipes are this process's to read: a copy held
                    # here would keep a killed launcher's pipes open.
                    for fd in [read_fd, *self.read_fds]:
                        os.close(fd)
                    with os.fdopen(write_fd, "wb") as out:
                        code = self._shard_main(shard, parent, out)
                finally:
                    os._exit(code)
            self.children.append(pid)
        finally:
            if pid != 0:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        os.close(write_fd)
        self.read_fds.append(read_fd)
        reader = threading.Thread(target=self._read, args=(shard, os.fdopen(read_fd, "rb")),
                                  name=f"shard-{shard}-pipe", daemon=True)
        reader.start()
        self.readers.append(reader)

    def _shard_main(self, shard: int, parent: int, out) -> int:
        """A forked shard's work; its exit code."""
        first, end = self.bounds[shard], self.bounds[shard + 1]
        stop = _ParentStop(self.control, parent)
        sending = True

        def done(i: int, summary: dict) -> None:
            nonlocal sending
            if self.control.aborted:
                raise Interrupted(self.control.stop or signal.SIGTERM)
            if sending:
                try:
                    pickle.dump((first + i, summary), out)
                    out.flush()
                except OSError:  # the parent is gone: its records are still worth finishing
                    sending = False

        try:
            _train_shard(self.members[first:end], torch.device("cpu"), stop,
                         lambda epochs, _: self.control.set_epochs(shard, epochs), done,
                         self.versions)
        except Interrupted:
            return 1
        except BaseException:  # noqa: BLE001 - said to the parent, in its words
            if sending:
                with contextlib.suppress(OSError):
                    pickle.dump((-shard, traceback.format_exc()), out)
            return 1
        return 0

    def _read(self, shard: int, pipe) -> None:
        try:
            while True:
                self.inbox.put(pickle.load(pipe))
        except (EOFError, OSError, ValueError, pickle.UnpicklingError):
            self.inbox.put((None, shard))
        finally:
            pipe.close()

    def _report_progress(self, own: int, total: int) -> None:
        if self.progress is not None:
            self.progress(min([own] + [self.control.epochs(k)
                                       for k in range(1, len(self.bounds) - 1)]), total)

    def train(self) -> list[dict]:
        summaries: dict[int, dict] = {}

        def done(i: int, summary: dict) -> None:
            summaries[i] = summary
            if self.on_member_done is not None:
                self.on_member_done(i, summary)

        self.control.set_epochs(0, 0)
        own_failure: Exception | None = None
        try:
            _train_shard(self.members[:self.bounds[1]], torch.device("cpu"), self.stop,
                         self._report_progress, done, self.versions)
        except Exception as e:  # noqa: BLE001 - the other shards' records still complete first
            own_failure = e
        received: dict[int, dict] = {}
        errors: dict[int, str] = {}  # shard -> the last line of its traceback
        ended: set[int] = set()
        failures: dict[int, str] = {}  # shard -> why its first unfinished job failed
        for i in range(self.bounds[1], len(self.members)):
            shard = next(k for k in range(1, len(self.bounds) - 1) if i < self.bounds[k + 1])
            while i not in received and shard not in ended:
                try:
                    key, value = self.inbox.get(timeout=PROGRESS_EVERY_S)
                except queue.Empty:
                    self._report_progress(self.epochs, self.epochs)
                    continue
                if key is None:
                    ended.add(value)
                elif key < 0:
                    errors[-key] = str(value).strip().splitlines()[-1]
                else:
                    received[key] = value
            if i in received:
                done(i, received.pop(i))
            elif shard not in failures:
                failures[shard] = (f"the process training jobs {self.bounds[shard]}-"
                                   f"{self.bounds[shard + 1] - 1} failed before job {i}'s record: "
                                   + (errors.get(shard) or f"it ended (exit {self._exit_code(shard)})"))
        if own_failure is not None:
            raise own_failure
        if failures:
            raise ShardError("; ".join(failures[k] for k in sorted(failures)))
        return [summaries[i] for i in range(len(self.members))]

    def _exit_code(self, shard: int) -> str:
        """The shard's exit status (it has ended: its pipe is closed)."""
        if shard not in self.exit_codes:
            pid, self.children[shard - 1] = self.children[shard - 1], 0
            try:
                _, status = os.waitpid(pid, 0)
                self.exit_codes[shard] = str(os.waitstatus_to_exitcode(status))
            except ChildProcessError:
                self.exit_codes[shard] = "unknown"
        return self.exit_codes[shard]

    def __exit__(self, *exc) -> bool:
        try:
            if exc[0] is not None:  # an error or a second signal here: the shards stop at once
                self.control.aborted = True
            for k, pid in enumerate(self.children):
                if pid:
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, 0)
                    self.children[k] = 0
            for reader in self.readers:
                reader.join()
        finally:
            self.stop.__exit__(*exc)
            torch.set_num_threads(self.previous_threads)
        return False


def _write_rows(writer: RecordWriter, name: str, rows: Iterable[tuple]) -> list[tuple]:
    """Write one of the record's CSVs (the number writer: names need no quoting) and return
    its rows, which hold the Python ints, names and floats a read gives back (repr
    round-trips a float), for :meth:`initlab.record.RunRecord.give_rows`."""
    rows = list(rows)
    writer.write_csv_numbers(name, rows)
    return rows


def _write_member(group: StackedGroup, i: int, member: _Member, final: dict[str, torch.Tensor],
                  last: list[torch.Tensor], best: list[torch.Tensor], signal_name: str | None,
                  per_member: dict[str, torch.Tensor]) -> None:
    """Job i's files, as the single run's recorders, checkpointer and summary write them.
    ``per_member``: the metrics (M, epochs, 4) and gradient norms (M, steps, params) laid out
    member-major, so one member's rows are one contiguous block."""
    writer, epochs_run = member.writer, group.epochs_run[i]
    tables: dict[str, list[tuple]] = {}
    n_train, n_dev = member.n_train, member.n_dev
    tables["metrics"] = _write_rows(writer, "metrics.csv", [
        (e, tl, tc / n_train, dl, dc / n_dev)
        for e, (tl, tc, dl, dc) in enumerate(per_member["metrics"][i, :epochs_run].tolist(), start=1)
    ])
    steps_run = epochs_run * group.steps_per_epoch
    grad_table = None
    if group.record_grad_norms:
        spe = group.steps_per_epoch
        grad_table = GradNormTable(group.names, list(range(steps_run)),
                                   [s // spe + 1 for s in range(steps_run)],
                                   per_member["grad_norms"][i, :steps_run].tolist())
        writer.write_csv_body("grad_norms.csv", grad_table.csv_body())

    def views(name: str) -> list[tuple[int, _Listed]]:
        return [(s.epoch, _Listed(s.row(name, s.position[i])))
                for s in group.logs if i in s.position and name in s.views]

    if group.record_weights:
        bounds = list(itertools.accumulate([math.prod(group.shapes[n]) for n in group.names], initial=0))
        tables["weights"] = _write_rows(writer, "weights.csv", weight_rows(
            group.names, [(e, [_Listed(flat[a:b]) for a, b in itertools.pairwise(bounds)])
                          for e, flat in views("weights")]))
    if group.record_weight_stats:
        tables["weight_stats"] = _write_rows(
            writer, "weight_stats.csv", weight_stats_rows(group.weight_names, views("weight_stats")))
    if group.record_activations:
        tables["activations"] = _write_rows(
            writer, "activations.csv", activation_stats_rows(group.layers, views("activations")))
        tables["units"] = _write_rows(writer, "units.csv", unit_rows(
            group.layers, [(e, [_Listed(layer) for layer in u]) for e, u in views("units")]))
        tables["activation_hists"] = _write_rows(
            writer, "activation_hists.csv",
            histogram_rows(group.layers, views("activation_hists"), HISTOGRAM_BINS))
    tensors: dict[str, Any] = {}
    if group.save_tensors:  # with the checkpoints (init.pt too is written only now)
        writer.save_tensors("data.pt", member.data)
        for name, stacked in (("init", group.init_state), ("best", best), ("last", last)):
            tensors[name] = _state(group.names, stacked, i)
            writer.save_tensors(f"checkpoints/{name}.pt", tensors[name])
    if group.checkpoint_epochs is not None:
        tensors[EPOCH_CHECKPOINTS] = {
            s.epoch: _state(group.names, list(s.views.values()), s.position[i])
            for s in group.checkpoints if i in s.position
        }
        writer.save_tensors(EPOCH_CHECKPOINTS, tensors[EPOCH_CHECKPOINTS])

    summary = member.summary
    summary.update(
        status=group.status[i],
        epochs_run=epochs_run,
        steps_run=steps_run,
        updated=time.time(),
        stop_reason=group.stop_reason[i],
        signal=signal_name if group.status[i] == STATUS_INTERRUPTED else None,
        best_epoch=int(group.best_epoch[i]),
        metrics={split: {"loss": values[0, i].item(), "acc": values[1, i].item() / n}
                 for (split, values), n in zip(final.items(), _split_sizes(member))},
        param_shapes=dict(group.shapes),
        n_params=group.n_params,
        init_signal=member_signal(group.init_signal, i, group.layer_names, member.cfg,
                                  group.layer_shapes),
    )
    # The diagnosis sees the record just written, as the single run's does (which reads it
    # back with read_record): the same rows and tensors, built from memory rather than
    # parsed again (tests/test_batched.py checks they equal read_record's).
    record = RunRecord(run_dir=writer.run_dir, summary=summary, config=summary["config"],
                       overrides=(read_overrides(writer.run_dir) if member.overrides is None
                                  else member.overrides), grad_norm_table=grad_table)
    for name, rows in tables.items():
        record.give_rows(name, rows)
    record._tensors.update(tensors)
    record._tensors["data.pt"] = member.data
    summary["diagnosis"] = [f.as_dict() for f in diagnose(record)]
    summary["grad_norms"] = grad_norm_ends(record)


def _split_sizes(member: _Member) -> tuple[int, int, int]:
    d = member.cfg.data
    return d.n_train, d.n_dev, d.n_test
