"""The one training engine: M >= 1 jobs of one shape trained as one stacked model.

A single run is a stack of one; a batched sweep groups its jobs by :func:`group_key` and
hands each group here. :func:`train_group` is the entry point: it trains the group (on a
CPU, a big group in one forked process per core, :mod:`initlab.shards`) and each member
writes its own record as it trains (:class:`initlab.job.MemberRecord`). Member k of a group
is the same experiment as job k trained alone:

- the same data, initial weights and mini-batch order: each member's data, init and
  shuffle come from its own generators on its own random streams (:func:`stream_seed`);
- the same loss and gradients: the members' mean BCE losses are summed, so each member's
  gradient is its own; the optimizers are torch's SGD and Adam written out with
  per-member hyper-parameters ((M, 1, 1) tensors), checked against torch.optim in the tests;
- the same stops: a member whose loss or gradient norm turns NaN/Inf is frozen at the end
  of that epoch (its updates are masked, so its weights stay as they were at the stop) and
  its record ends there with status ``diverged``; the others train on. A signal stops
  every member after the current epoch.

Per epoch the loop makes one host copy of (5, M) numbers: the metrics and whether each
member's gradient norms stayed finite; gradient norms stay in a device buffer until a log
epoch's flush, which streams every member's new rows to its record.
"""

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from initlab.budget import EPOCH_CHECKPOINT_COUNT, EPOCH_CHECKPOINT_MAX_PARAMS, GRAD_NORM_CHUNK_VALUES
from initlab.data import make_splits
from initlab.group_record import GroupRecordWriter, GroupSlot
from initlab.init import data_dependent_init_, init_linear_
from initlab.interrupts import StopOnSignal
from initlab.job import MemberRecord, library_versions
from initlab.model import (
    activation_backward,
    correct_calls,
    feature_major,
    forward,
    loss_and_grads,
    make_activation,
    member_losses,
    parameter_shapes,
)
from initlab.options import CUSTOM, OPTION_GROUPS, activation, dataset, is_custom
from initlab.record import STATUS_COMPLETED, STATUS_DIVERGED, STATUS_INTERRUPTED
from initlab.recorders import activation_views, log_epoch_due, spread_log_epochs, weight_quantiles
from initlab.signal import measure as measure_signal
from initlab.view import ConfigView, config_view, to_plain

# Independent random streams, so changing one part (say the init) leaves the others alone.
DATA_STREAM, INIT_STREAM, SHUFFLE_STREAM = 0, 1, 2
# More norms than this in one epoch of a member are checked for NaN/Inf through their sum,
# which is non-finite iff one of them is (barring an overflow only exploding norms reach).
FINITE_CHECK_MAX_VALUES = 1024
# The progress callback is called at most this often (and at the last epoch).
PROGRESS_EVERY_S = 0.2
# A CPU group trains in one forked process per core (initlab.shards), each with at least
# this many members (a fork costs ~10 ms, and a small stacked model is overhead-bound).
SHARD_MIN_MEMBERS = 32
# ... or at least this many parameters in all: a 10-member group of depth-30 width-128 nets
# (the schoenholz2017 preset's) spends seconds a member on its measurements at init and its
# record, and trains in half the time in two processes.
SHARD_MIN_WORK = 1_000_000
# Streaming the records costs at most about this share of training: the next flush waits
# at least this many times as long as the last one took (a 4096-member group's flush
# writes thousands of files).
FLUSH_MAX_SHARE = 0.1


# A measurement of at least this many activation values (all members) frees tens of MB of
# temporaries that glibc keeps mapped: a 2,048-member group of depth-10 nets held 800 MB
# more after its measurements than it used (release_freed_memory).
RELEASE_AFTER_VALUES = 1 << 24
# A log epoch measures the activations of at most this many values (all layers) at once.
MEASURE_BLOCK_VALUES = 1 << 23


def release_freed_memory() -> None:
    """Hand the memory freed by big temporaries back to the system (glibc's malloc_trim;
    nothing elsewhere): a big group's RSS stays what it uses, not its peak."""
    if sys.platform != "linux":
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # another C library (musl): nothing to trim
        pass


def stream_seed(seed: int, stream: int) -> int:
    return seed * 1000 + stream


def generator(seed: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(stream_seed(seed, stream))


def group_key(cfg: Any) -> tuple:
    """Jobs with equal keys can train as one stacked model.

    The key holds what fixes the stacked shapes and the loop: architecture (act included),
    epochs, batch size, log schedule, recorders, the data set's name and split sizes, the
    optimizer kind (and Adam's betas). Everything else may differ between members: seeds,
    init scheme and its parameters, biases, learning rate, momentum, weight decay, noise.
    A job with a custom component (``act=custom``, ...) has no key: ValueError, and it trains
    as a stack of one (a user's component may draw from torch's global generator or not be
    elementwise, which would tie the members of a stack together).
    """
    for group in OPTION_GROUPS:
        if is_custom(cfg[group].name):
            raise ValueError(f"{group}={CUSTOM}: a job with a custom component trains alone")
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


def _per_member(values: list[float], like: torch.Tensor) -> torch.Tensor:
    """(M, 1, 1) float tensor of one hyper-parameter per member, on ``like``'s device."""
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, 1, 1)


def _as(h: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """View an (M, ...) tensor so it broadcasts against parameter ``p`` (M, ...)."""
    return h.view((-1,) + (1,) * (p.dim() - 1))


class StackedOptimizer:
    """torch.optim.SGD / Adam, written out with per-member hyper-parameters (torch's
    optimizers take one learning rate per parameter group, not one per slice of a tensor).

    ``step(grads, active)`` updates every member where ``active`` (M,) is true; frozen
    members keep their parameters exactly (a ``where``, since their updates may be NaN).
    """

    def __init__(self, cfgs: Sequence[ConfigView], params: list[torch.Tensor]):
        o = cfgs[0].optim
        if o.name not in ("sgd", "adam"):
            raise ValueError(f"optim.name={o.name!r} is not one of: sgd, adam")
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
            self.eps = 1e-8  # torch.optim.Adam's default
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


def _member_data(cfg: Any, cache: dict) -> Any:
    """The member's splits; members with the same data config and seed (a learning-rate
    sweep) share one copy."""
    seed = stream_seed(cfg.seed, DATA_STREAM)
    key = (seed, tuple(sorted((k, repr(v)) for k, v in to_plain(cfg.data).items())))
    if key not in cache:
        cache[key] = make_splits(cfg.data, seed)
    return cache[key]


class StackedGroup:
    """The state of one stack: data, parameters, optimizer, measurements, each member's
    record; :meth:`fit` trains it."""

    def __init__(self, cfgs: Sequence[ConfigView], records: Sequence[MemberRecord],
                 device: torch.device, group_writer: GroupRecordWriter | None = None):
        cfg = cfgs[0]
        self.group_writer = group_writer  # the members' group record, if they keep no folders
        t = cfg.trainer
        self.records, self.device = list(records), device
        self.M = len(cfgs)
        self.epochs, self.log_every = t.epochs, t.log_every
        self.flush_every_s = t.flush_every_s
        recorders = set(t.recorders)
        torch.manual_seed(cfg.seed)  # for a custom component drawing from the global generator
        self.shapes = parameter_shapes(cfg.model, cfg.data.dim)
        self.names = list(self.shapes)
        self.weight_names = self.names[0::2]
        self.layer_names = [name.removesuffix(".weight") for name in self.weight_names]
        self.layer_shapes = [tuple(self.shapes[n]) for n in self.weight_names]
        self.hidden_layers = self.layer_names[:-1]
        self.n_params = sum(math.prod(shape) for shape in self.shapes.values())
        self.act_module = make_activation(cfg.act)
        self.act = feature_major(self.act_module)
        self.act_backward = activation_backward(self.act_module)
        self.bounds = activation(cfg.act.name).bounded

        # Each member's init from its own generator, straight into its slice of the stacked
        # tensors (no nn.Module per member: a 10,000-member group builds none).
        stacked_init = [torch.empty(self.M, *shape) for shape in self.shapes.values()]
        splits, cache = [], {}
        for i, c in enumerate(cfgs):
            splits.append(_member_data(c, cache))
            init, act, gen = c.init, c.act, generator(c.seed, INIT_STREAM)
            for k in range(0, len(stacked_init), 2):
                init_linear_(stacked_init[k][i], stacked_init[k + 1][i], init, act, gen)
            data_dependent_init_([w[i] for w in stacked_init[0::2]],
                                 [b[i] for b in stacked_init[1::2]], self.act_module,
                                 splits[-1].X_train, init)
        self.splits = splits
        self.init_state = stacked_init
        self.params = [p.to(device, copy=True) for p in stacked_init]
        self.data = {key: torch.stack([getattr(s, key) for s in splits]).to(device)
                     for key in vars(splits[0])}
        # The inputs feature-major, as model.forward takes them: (M, features, examples).
        self.xT = {split: self.data[f"X_{split}"].transpose(1, 2).contiguous()
                   for split in ("train", "dev", "test")}
        self.is_one = {split: self.data[f"y_{split}"] > 0.5 for split in ("train", "dev", "test")}
        # What one member's hidden activations on the training set hold (a measurement's
        # temporaries are a few times this per member).
        self.activation_values = (cfg.model.depth - 1) * cfg.model.width * cfg.data.n_train
        self.init_signal = {k: v.cpu() for k, v in measure_signal(
            self.params, self.act_module, self.act_backward, self.xT["train"],
            self.data["y_train"]).items()}
        if self.M * self.activation_values >= RELEASE_AFTER_VALUES:
            release_freed_memory()
        n = self.data["X_train"].shape[1]
        self.batch_size = n if t.batch_size is None else min(t.batch_size, n)
        self.steps_per_epoch = math.ceil(n / self.batch_size)
        self.shuffle_gens = ([generator(c.seed, SHUFFLE_STREAM) for c in cfgs]
                             if self.batch_size < n else None)
        self.optimizer = StackedOptimizer(cfgs, self.params)

        self.record_grad_norms = "grad_norms" in recorders
        self.record_weights = "weights" in recorders and self.n_params <= t.weights_max_params
        self.record_weight_stats = "weights" in recorders
        self.record_activations = "activations" in recorders and bool(self.hidden_layers)
        self.save_tensors = bool(t.get("save_tensors", True))
        self.checkpoint_epochs = (
            frozenset(spread_log_epochs(t.log_every, t.epochs, EPOCH_CHECKPOINT_COUNT))
            if self.n_params <= EPOCH_CHECKPOINT_MAX_PARAMS and self.save_tensors else None)

        # Gradient norms: a device buffer of whole epochs, copied to the host when full or
        # at a flush; the host keeps them all (the diagnosis reads them at the end).
        P, spe = len(self.names), self.steps_per_epoch
        epochs_per_chunk = max(1, GRAD_NORM_CHUNK_VALUES // (self.M * P * spe))
        self.grad_norms = (torch.empty(spe * min(epochs_per_chunk, t.epochs), self.M, P,
                                       device=device) if self.record_grad_norms else None)
        self.grad_slot = 0
        self.grad_chunks: list[torch.Tensor] = []  # host (steps, M, P)
        self.metrics = torch.empty(t.epochs, 4, self.M)  # host: train loss/correct, dev loss/correct
        self.best_correct = torch.full((self.M,), -1.0)
        self.best_epoch = torch.zeros(self.M, dtype=torch.long)
        self.best = [p.clone() for p in self.params]
        # (epoch, {member: row}, host tensors with one row per member measured then)
        self.logs: list[tuple[int, dict[int, int], dict[str, torch.Tensor]]] = []
        self.checkpoints: list[tuple[int, dict[int, int], list[torch.Tensor]]] = []
        # How each member's fit ended, and how far its record is streamed.
        self.epoch = 0
        self.stopped_at: list[int | None] = [None] * self.M
        self.stop_reason: list[str | None] = [None] * self.M
        self.status = [STATUS_COMPLETED] * self.M
        self.streamed_epochs = [0] * self.M
        self.streamed_steps = 0  # grad_chunks rows already streamed (the same for every member)

    # --------------------------------------------------------------------- the fit
    def fit(self, stop: Any, progress: Callable | None = None) -> float:
        """Train every member until its last epoch or its stop; returns the seconds spent.
        ``stop.received`` is read once an epoch (a signal's number, or None);
        ``progress(epoch, epochs, metrics)`` gets the host (4, M) metrics of the epoch."""
        active = torch.ones(self.M, dtype=torch.bool)  # host copy of who still trains
        active_dev: torch.Tensor | None = None  # None while every member trains (no masking)
        started = time.perf_counter()
        if self.checkpoint_epochs is not None and 0 in self.checkpoint_epochs:
            self.checkpoint(0, active)
        self.measure(0, active)
        last_progress = next_flush = time.monotonic()
        next_flush += self.flush_every_s
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
            for m in (stopping.nonzero().squeeze(1).tolist() if stopping.any() else ()):
                # A bad gradient precedes the losses its step spoils.
                if grads_finite[m] == 0:
                    reason = f"non-finite gradient norms at epoch {epoch}"
                elif not math.isfinite(train_loss[m]):
                    reason = f"non-finite training loss at epoch {epoch}"
                else:
                    reason = f"non-finite dev loss at epoch {epoch}"
                self.stop_reason[m], self.status[m] = reason, STATUS_DIVERGED
            if stop.received is not None:
                for m in active.nonzero().squeeze(1).tolist():
                    if self.stop_reason[m] is None:
                        self.stop_reason[m] = f"interrupted by {stop.name} at epoch {epoch}"
                    self.status[m] = STATUS_INTERRUPTED
                stopping = active.clone()
            due = log_epoch_due(epoch, self.log_every, self.epochs)
            logged = active if due else stopping
            if logged.any():
                self.measure(epoch, logged)
            if self.checkpoint_epochs is not None:
                saved = active if epoch in self.checkpoint_epochs else stopping
                if saved.any():
                    self.checkpoint(epoch, saved)
            if self.grad_norms is not None and self.grad_slot == self.grad_norms.shape[0]:
                self.host_grad_norms()
            self.epoch = epoch
            if stopping.any():
                for m in stopping.nonzero().squeeze(1).tolist():
                    self.stopped_at[m] = epoch
                active = active & ~stopping
                active_dev = active.to(self.device)
            now = time.monotonic()
            if due and now >= next_flush and epoch < self.epochs and active.any():
                self.stream_records()
                took = time.monotonic() - now
                next_flush = time.monotonic() + max(self.flush_every_s, took / FLUSH_MAX_SHARE)
            if progress is not None and (now - last_progress >= PROGRESS_EVERY_S
                                         or epoch == self.epochs or not active.any()):
                last_progress = now
                progress(epoch, self.epochs, host[:4])
            if not active.any():
                break
        self.host_grad_norms()
        return time.perf_counter() - started

    def epochs_done(self, i: int) -> int:
        """Epochs member i has trained so far (all of its rows are valid up to there)."""
        at = self.stopped_at[i]
        return self.epoch if at is None else at

    def _batches(self):
        X, y, y1 = self.xT["train"], self.data["y_train"], self.is_one["train"]
        if self.shuffle_gens is None:
            yield X, y, y1  # full batch, in data order, as the textbook trains
            return
        n = y.shape[1]
        order = torch.stack([torch.randperm(n, generator=g) for g in self.shuffle_gens]).to(self.device)
        for idx in order.split(self.batch_size, dim=1):
            xb = X.gather(2, idx.unsqueeze(1).expand(-1, X.shape[1], -1))
            yield xb, y.gather(1, idx), y1.gather(1, idx)

    def train_epoch(self, active: torch.Tensor | None) -> torch.Tensor:
        """One pass; returns per member (train loss, train correct, dev loss, dev correct,
        gradient norms all finite) as a (5, M) device tensor. The training loss and accuracy
        are those of the forward passes before each step, as the textbook's runner logs them."""
        loss_total = correct_total = None
        epoch_start = self.grad_slot
        for xb, yb, yb1 in self._batches():
            logits, loss, grads = loss_and_grads(self.params, self.act, self.act_backward, xb, yb)
            correct = correct_calls(logits, yb1)
            if self.grad_norms is not None:
                self.grad_norms[self.grad_slot] = torch.stack(
                    [torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads], 1)
                self.grad_slot += 1
            self.optimizer.step(grads, active)
            weighted = loss * yb.shape[1]
            if loss_total is None:
                loss_total, correct_total = weighted, correct
            else:
                loss_total, correct_total = loss_total + weighted, correct_total + correct
        n_train = self.data["y_train"].shape[1]
        train_loss = loss if self.steps_per_epoch == 1 else loss_total / n_train
        with torch.no_grad():
            dev_logits = forward(self.params, self.act, self.xT["dev"])
            dev_loss = member_losses(dev_logits, self.data["y_dev"])
            dev_correct = correct_calls(dev_logits, self.is_one["dev"])
        if self.grad_norms is not None:
            epoch_norms = self.grad_norms[epoch_start:self.grad_slot]
            if epoch_norms.shape[0] * epoch_norms.shape[2] > FINITE_CHECK_MAX_VALUES:
                finite = torch.isfinite(epoch_norms.sum((0, 2)))
            else:
                finite = torch.isfinite(epoch_norms).all(2).all(0)
        else:
            finite = torch.ones(self.M, dtype=torch.bool, device=self.device)
        return torch.stack((train_loss, correct_total, dev_loss, dev_correct, finite.float()))

    def host_grad_norms(self) -> None:
        """Move the device buffer's gradient norms to the host."""
        if self.grad_norms is not None and self.grad_slot:
            self.grad_chunks.append(self.grad_norms[:self.grad_slot].to("cpu", copy=True))
            self.grad_slot = 0

    def stream_records(self) -> None:
        """Every member's new metric and gradient-norm rows to its record, and its summary's
        progress: a killed group keeps all but the last few seconds of each member."""
        self.host_grad_norms()
        # The chunks not streamed yet: every stream moves the device buffer to the host first,
        # so the streamed steps end at a chunk's end.
        first_step, seen, new = self.streamed_steps, 0, []
        for chunk in self.grad_chunks:
            if seen >= first_step:
                new.append(chunk)
            seen += chunk.shape[0]
        new_norms = torch.cat(new).transpose(0, 1) if new else None
        for i, record in enumerate(self.records):
            start, end = self.streamed_epochs[i], self.epochs_done(i)
            if end <= start:
                continue
            steps = None
            if new_norms is not None:
                steps = new_norms[i, : max(0, end * self.steps_per_epoch - first_step)]
            record.stream(self.metrics[start:end, :, i].tolist(), start + 1, first_step, steps,
                          self.steps_per_epoch, end)
            self.streamed_epochs[i] = end
        self.streamed_steps = seen
        if self.group_writer is not None and self.group_writer.flush_due():
            self.group_writer.flush()

    @torch.no_grad()
    def update_best(self, improved: torch.Tensor) -> None:
        mask = improved.to(self.device)
        for best, p in zip(self.best, self.params):
            best.copy_(torch.where(_as(mask, p), p, best))

    @torch.no_grad()
    def measure(self, epoch: int, members: torch.Tensor) -> None:
        """The log-epoch views of ``members`` (host bool (M,)): weights, weight quantiles,
        activation statistics (:mod:`initlab.recorders`), kept on the host."""
        idx = members.nonzero().squeeze(1)
        everyone = idx.numel() == self.M
        idx_dev = idx.to(self.device)
        params = self.params if everyone else [p[idx_dev] for p in self.params]
        views: dict[str, torch.Tensor] = {}
        if self.record_weights:
            views["weights"] = torch.cat([p.flatten(1) for p in params], 1)
        if self.record_weight_stats:
            views["weight_stats"] = weight_quantiles(params[0::2])
        if self.record_activations:
            X = self.xT["train"] if everyone else self.xT["train"][idx_dev]
            # In blocks of members: the temporaries stay ~MEASURE_BLOCK_VALUES floats a
            # layer, whatever the group's size (each member's views are its own).
            block = max(1, MEASURE_BLOCK_VALUES // max(1, self.activation_values))
            parts = []
            for start in range(0, X.shape[0], block):
                hidden: list[torch.Tensor] = []
                forward([p[start:start + block] for p in params], self.act,
                        X[start:start + block], hidden)
                parts.append(activation_views(hidden, self.bounds,
                                              with_histograms=self.group_writer is None))
            views.update({k: torch.cat([part[k] for part in parts]) for k in parts[0]})
        if views:
            self.logs.append((epoch, _positions(idx), {k: v.cpu() for k, v in views.items()}))
        if self.record_activations and idx.numel() * self.activation_values >= RELEASE_AFTER_VALUES:
            release_freed_memory()

    @torch.no_grad()
    def checkpoint(self, epoch: int, members: torch.Tensor) -> None:
        idx = members.nonzero().squeeze(1)
        idx_dev = idx.to(self.device)
        self.checkpoints.append((epoch, _positions(idx), [p[idx_dev].cpu() for p in self.params]))

    @torch.no_grad()
    def final_metrics(self) -> dict[str, torch.Tensor]:
        """Per split: (2, M) host tensor of loss and correct of the best-on-dev parameters,
        as the textbook's runner reports them."""
        out = {}
        for split in ("train", "dev", "test"):
            logits = forward(self.best, self.act, self.xT[split])
            out[split] = torch.stack((member_losses(logits, self.data[f"y_{split}"]),
                                      correct_calls(logits, self.is_one[split]))).cpu()
        return out

    def member_grad_norms(self) -> torch.Tensor:
        """(M, steps, params) host gradient norms, member-major: one member's rows are then
        one contiguous block for its record."""
        if not self.grad_chunks:
            return torch.empty(self.M, 0, len(self.names))
        return torch.cat(self.grad_chunks).transpose(0, 1).contiguous()


def _positions(idx: torch.Tensor) -> dict[int, int]:
    return {m: row for row, m in enumerate(idx.tolist())}


# ------------------------------------------------------------------------ the entry point
# config, where its record goes (its folder, or its group's record), its overrides
Member = tuple[ConfigView, "Path | GroupSlot", Sequence[str] | None]


def train_group(
    cfgs: Sequence[ConfigView],
    out_dirs: Sequence["Path | GroupSlot"],
    device: str = "cpu",
    progress: Callable | None = None,
    on_member_done: Callable[[int, dict], None] | None = None,
    overrides: Sequence[Sequence[str]] | None = None,
    threads: int | None = None,
    launcher: str | None = None,
) -> list[dict]:
    """Train ``cfgs`` (composed, validated configs; more than one only with one
    :func:`group_key`) as one stacked model on ``device``; job i's record streams into
    ``out_dirs[i]`` as it trains and is complete when this returns (a folder, or a
    :class:`GroupSlot`: rows of its group's record, :mod:`initlab.group_record`).

    ``progress(epochs_done, epochs, metrics)`` is called at most every PROGRESS_EVERY_S
    seconds and at the end (``metrics``: the epoch's host (4, M) [train loss, train correct,
    dev loss, dev correct], or None from a sharded group); ``on_member_done(i, summary)``
    once job i's record is complete, in member order. SIGINT/SIGTERM stop every member after
    the current epoch (status ``interrupted``), a second one aborts at once. ``overrides``:
    job i's command-line overrides (default: read from its .hydra/overrides.yaml), for the
    diagnosis. ``threads``: CPU cores (default: the first job's trainer.threads); a CPU group
    of at least 2 × SHARD_MIN_MEMBERS members trains in one process per core. ``launcher``:
    written into summary.json when not a single run. Returns the members' summaries.
    """
    cfgs = [config_view(c) for c in cfgs]  # the one config form past the command line
    if len(cfgs) != len(out_dirs) or not cfgs:
        raise ValueError(f"train_group needs one out_dir per config (got {len(cfgs)} configs, "
                         f"{len(out_dirs)} out_dirs)")
    if len(cfgs) > 1 and len({group_key(c) for c in cfgs}) != 1:
        raise ValueError("train_group got configs of different group keys")
    dev = torch.device(device)
    threads = cfgs[0].trainer.threads if threads is None else threads
    members: list[Member] = list(zip(cfgs, out_dirs, overrides if overrides is not None
                                     else [None] * len(cfgs)))
    n_params = sum(math.prod(s) for s in parameter_shapes(cfgs[0].model, cfgs[0].data.dim).values())
    shards = _shard_count(dev, len(cfgs), threads or 1, n_params)
    if shards == 1:
        if dev.type == "cpu" and threads is not None:
            torch.set_num_threads(threads)
        with StopOnSignal() as stop:
            return train_shard(members, dev, stop, progress, on_member_done, library_versions(),
                               launcher)
    from initlab.shards import Shards

    with Shards(members, shards, threads or 1, progress, on_member_done, train_shard,
                launcher) as sharded:
        return sharded.train()


def _shard_count(dev: torch.device, members: int, threads: int, n_params: int = 0) -> int:
    """How many processes train this group: one per core on a CPU, each with enough members
    to pay for its fork (SHARD_MIN_MEMBERS of a tiny net; fewer of a big one, whose members'
    measurements and records cost far more than a fork: SHARD_MIN_WORK parameters a shard);
    one on a GPU (CUDA does not survive a fork)."""
    if dev.type != "cpu" or not hasattr(os, "fork") or sys.platform != "linux":
        return 1
    per_shard = max(2, min(SHARD_MIN_MEMBERS, -(-SHARD_MIN_WORK // max(1, n_params))))
    return max(1, min(threads, members // per_shard))


def train_shard(members: Sequence[Member], dev: torch.device, stop: Any, progress: Callable | None,
                on_member_done: Callable[[int, dict], None] | None, versions: dict[str, str],
                launcher: str | None = None) -> list[dict]:
    """Train ``members`` as one stacked model in this process; each writes its record as it
    trains, and ``on_member_done(i, summary)`` follows each completed record, in order."""
    started = time.perf_counter()
    writer = _group_writer(members)
    records = [MemberRecord(where if isinstance(where, GroupSlot) else Path(where), cfg, overrides,
                            dev, versions, launcher, writer)
               for cfg, where, overrides in members]
    group = StackedGroup([cfg for cfg, _, _ in members], records, dev, writer)
    if group.save_tensors:
        # The data and the initial weights first: a member killed at any point keeps what
        # it trained on and started from.
        for i, record in enumerate(records):
            record.save_start(group.splits[i], group.names, [p[i] for p in group.init_state])
    if writer is not None:  # every member's `running` row, before training
        writer.flush()
    train_s = group.fit(stop, progress)
    setup_s = time.perf_counter() - started - train_s
    group.stream_records()
    final = group.final_metrics()
    grad_norms = group.member_grad_norms()
    last = [p.cpu() for p in group.params]
    best = [b.cpu() for b in group.best]
    summaries = []
    for i, record in enumerate(records):
        record_started = time.perf_counter()
        try:
            summary = record.finish(group, i, final, grad_norms[i], last, best, stop.signal)
        except Exception as e:  # noqa: BLE001 - one member's failure is its own
            if group.M == 1:
                raise
            summary = record.failed(e)
        else:
            now = time.perf_counter()
            # This member's share of the group's setup and training, plus its own record.
            summary["timing"] = {"train_s": train_s / group.M, "record_s": now - record_started,
                                 "total_s": (setup_s + train_s) / group.M + now - record_started}
            record.save(summary)
        if record.group is not None:
            # Its row holds the whole summary; the launcher needs how it ended, not 100,000
            # summaries in memory.
            summary = {k: summary[k] for k in SLIM_SUMMARY_KEYS if k in summary}
        summaries.append(summary)
        if writer is not None and writer.flush_due():
            writer.flush()
        if on_member_done is not None:
            on_member_done(i, summary)
    if writer is not None:
        writer.flush()
    return summaries


SLIM_SUMMARY_KEYS = ("status", "error", "seed", "epochs_run", "stop_reason", "signal")


def _group_writer(members: Sequence[Member]) -> GroupRecordWriter | None:
    """The writer of this process's rows when the members keep no folders (GroupSlots)."""
    slots = [where for _, where, _ in members if isinstance(where, GroupSlot)]
    if not slots:
        return None
    if len(slots) != len(members) or len({s.group_dir for s in slots}) != 1:
        raise ValueError("a stack writes either every member's folder or one group's record")
    cfg = members[0][0]
    return GroupRecordWriter(slots[0].group_dir, slots[0].job,
                             list(parameter_shapes(cfg.model, cfg.data.dim)), cfg.trainer.flush_every_s)
