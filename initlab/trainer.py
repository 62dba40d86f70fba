"""The fit loop and the events it fires to callbacks.

Events, in the order they fire::

    before_fit                      model initialized, nothing trained (epoch 0)
      before_epoch
        after_backward              gradients ready, before the optimizer step
        after_step                  parameters updated
      after_eval                    train and dev metrics of the epoch are known
      after_epoch
    after_fit

A callback is any object with methods named after the events it wants; each receives
the :class:`Trainer`. Callbacks observe the trainer's state; the one change they may
ask for is a stop, through :meth:`Trainer.request_stop`.

Per-epoch metrics leave the device once per epoch, as one 4-float copy; nothing is
copied per step or per parameter. A callback may also offer ``epoch_nonfinite(trainer)``:
a device scalar counting the NaN/Inf values it saw during the epoch (e.g. gradient norms).
Those counts ride along in the same host copy, and a non-zero count stops the fit, as a
non-finite training loss does.
"""

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from initlab.data import Splits

EVENTS = (
    "before_fit",
    "before_epoch",
    "after_backward",
    "after_step",
    "after_eval",
    "after_epoch",
    "after_fit",
)


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_acc: float
    dev_loss: float
    dev_acc: float


@dataclass
class TrainerState:
    """What callbacks may read. ``epoch`` counts completed epochs (0 before training);
    ``step`` counts optimizer steps taken."""

    epoch: int = 0
    step: int = 0
    history: list[EpochMetrics] = field(default_factory=list)
    best_epoch: int = 0
    best_dev_acc: float = -math.inf
    improved: bool = False  # this epoch's dev accuracy beat every earlier epoch
    stop_reason: str | None = None
    train_s: float = 0.0


def binary_loss_and_correct(logits: torch.Tensor, y: torch.Tensor):
    """Summed BCE (of sigmoid(logits) against y) and number of correct 0.5-threshold calls."""
    loss = nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum")
    correct = ((logits > 0) == (y > 0.5)).sum()
    return loss, correct


@torch.no_grad()
def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean BCE loss and accuracy of ``model`` on (X, y), as Python floats."""
    model.eval()
    loss, correct = binary_loss_and_correct(model(X), y)
    n = X.shape[0]
    return loss.item() / n, correct.item() / n


class Trainer:
    """Full-batch (or mini-batch) training with binary cross-entropy, firing events."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        splits: Splits,
        epochs: int,
        batch_size: int | None = None,
        callbacks: Sequence[object] = (),
        shuffle_gen: torch.Generator | None = None,
    ):
        self.model = model
        self.optimizer = optimizer
        self.splits = splits
        self.epochs = epochs
        n = splits.X_train.shape[0]
        self.batch_size = n if batch_size is None else min(batch_size, n)
        self.steps_per_epoch = math.ceil(n / self.batch_size)
        self.shuffle_gen = shuffle_gen
        self.callbacks = list(callbacks)
        self.state = TrainerState()
        # Bound methods per event, looked up once: firing an event is a short loop.
        self._handlers = {
            event: [getattr(cb, event) for cb in self.callbacks if hasattr(cb, event)]
            for event in EVENTS
        }
        self._nonfinite_counters = [
            (getattr(cb, "watches", type(cb).__name__), cb.epoch_nonfinite)
            for cb in self.callbacks
            if hasattr(cb, "epoch_nonfinite")
        ]

    def fire(self, event: str) -> None:
        for handler in self._handlers[event]:
            handler(self)

    def request_stop(self, reason: str) -> None:
        """Ask the loop to stop after the current epoch (the first reason wins)."""
        if self.state.stop_reason is None:
            self.state.stop_reason = reason

    def _batches(self):
        X, y = self.splits.X_train, self.splits.y_train
        n = X.shape[0]
        if self.batch_size >= n:
            yield X, y  # full batch, in data order, as the textbook trains
            return
        order = torch.randperm(n, generator=self.shuffle_gen).to(X.device)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield X[idx], y[idx]

    def _train_epoch(self) -> torch.Tensor:
        """One pass over the training set; returns (summed loss, correct) on the device."""
        model, opt, state = self.model, self.optimizer, self.state
        model.train()
        totals = torch.zeros(2, device=self.splits.X_train.device)
        for xb, yb in self._batches():
            logits = model(xb)
            loss_sum, correct = binary_loss_and_correct(logits, yb)
            opt.zero_grad(set_to_none=True)
            (loss_sum / xb.shape[0]).backward()
            self.fire("after_backward")
            opt.step()
            self.fire("after_step")
            state.step += 1
            # Metrics of the forward pass before the step, as the textbook's runner logs them.
            totals += torch.stack((loss_sum.detach(), correct))
        return totals

    @torch.no_grad()
    def _dev_totals(self) -> torch.Tensor:
        self.model.eval()
        loss_sum, correct = binary_loss_and_correct(self.model(self.splits.X_dev), self.splits.y_dev)
        return torch.stack((loss_sum, correct))

    def fit(self) -> TrainerState:
        state = self.state
        n_train = self.splits.X_train.shape[0]
        n_dev = self.splits.X_dev.shape[0]
        start = time.perf_counter()
        self.fire("before_fit")
        for epoch in range(1, self.epochs + 1):
            self.fire("before_epoch")
            train_totals = self._train_epoch()
            dev_totals = self._dev_totals()
            # The one host copy of the epoch: four numbers, plus one count per non-finite check.
            counts = [count(self).reshape(1).to(train_totals.dtype)
                      for _, count in self._nonfinite_counters]
            tl, tc, dl, dc, *nonfinite = torch.cat((train_totals, dev_totals, *counts)).tolist()
            state.epoch = epoch
            metrics = EpochMetrics(epoch, tl / n_train, tc / n_train, dl / n_dev, dc / n_dev)
            state.history.append(metrics)
            state.improved = metrics.dev_acc > state.best_dev_acc
            if state.improved:
                state.best_dev_acc, state.best_epoch = metrics.dev_acc, epoch
            # Gradients first: a bad gradient precedes the losses its step spoils.
            for (watched, _), n in zip(self._nonfinite_counters, nonfinite, strict=True):
                if n:
                    self.request_stop(f"{int(n)} non-finite {watched} at epoch {epoch}")
            if not math.isfinite(metrics.train_loss):
                self.request_stop(f"non-finite training loss at epoch {epoch}")
            elif not math.isfinite(metrics.dev_loss):  # inf BCE-with-logits = inf logits
                self.request_stop(f"non-finite dev loss at epoch {epoch}")
            self.fire("after_eval")
            self.fire("after_epoch")
            if state.stop_reason is not None:
                break
        self.fire("after_fit")
        state.train_s = time.perf_counter() - start
        return state
