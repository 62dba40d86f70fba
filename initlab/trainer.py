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
copied per step or per parameter. A callback may also offer ``epoch_must_be_finite(trainer)``:
0-d device tensors (e.g. the epoch's gradient norms) that ride along in that same copy; one
NaN/Inf among them stops the fit, as a non-finite training or dev loss does.
"""

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from initlab.data import Splits

MODE_DEPENDENT_LAYERS = (nn.Dropout, nn.modules.batchnorm._BatchNorm)

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


def binary_loss_and_correct(logits: torch.Tensor, y: torch.Tensor, y_is_one: torch.Tensor):
    """Mean BCE (of sigmoid(logits) against y) and the number of correct 0.5-threshold calls.

    ``y_is_one`` is ``y > 0.5``, computed once per split rather than once per step.
    """
    loss = nn.functional.binary_cross_entropy_with_logits(logits, y)
    # float32 counts (exact below 2**24 examples) keep the epoch's one stack single-dtype
    correct = (logits.detach() > 0).eq(y_is_one).sum(dtype=torch.float32)
    return loss, correct


@torch.no_grad()
def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean BCE loss and accuracy of ``model`` on (X, y), as Python floats."""
    model.eval()
    loss, correct = binary_loss_and_correct(model(X), y, y > 0.5)
    return loss.item(), correct.item() / X.shape[0]


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
        # train()/eval() walk every module (~10 us each for a tiny net, twice an epoch);
        # skip them for models whose layers behave the same in both modes, as our MLP does.
        self._mode_matters = any(isinstance(m, MODE_DEPENDENT_LAYERS) for m in model.modules())
        self._train_is_one = splits.y_train > 0.5
        self._dev_is_one = splits.y_dev > 0.5
        # Bound methods per event, looked up once: firing an event is a short loop.
        self._handlers = {
            event: [getattr(cb, event) for cb in self.callbacks if hasattr(cb, event)]
            for event in EVENTS
        }
        self._finite_checks = [
            (getattr(cb, "watches", type(cb).__name__), cb.epoch_must_be_finite)
            for cb in self.callbacks
            if hasattr(cb, "epoch_must_be_finite")
        ]

    def fire(self, event: str) -> None:
        for handler in self._handlers[event]:
            handler(self)

    def request_stop(self, reason: str) -> None:
        """Ask the loop to stop after the current epoch (the first reason wins)."""
        if self.state.stop_reason is None:
            self.state.stop_reason = reason

    def _batches(self):
        X, y, y_is_one = self.splits.X_train, self.splits.y_train, self._train_is_one
        n = X.shape[0]
        if self.batch_size >= n:
            return ((X, y, y_is_one),)  # full batch, in data order, as the textbook trains
        order = torch.randperm(n, generator=self.shuffle_gen).to(X.device)
        return (
            (X[idx], y[idx], y_is_one[idx])
            for idx in order.split(self.batch_size)
        )

    def _train_epoch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass over the training set; returns (mean loss, correct) as device scalars.

        Both come from the forward pass before each step, as the textbook's runner logs them.
        """
        model, opt, state = self.model, self.optimizer, self.state
        if self._mode_matters:
            model.train()
        loss_total = correct_total = None
        for xb, yb, yb_is_one in self._batches():
            loss, correct = binary_loss_and_correct(model(xb), yb, yb_is_one)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            self.fire("after_backward")
            opt.step()
            self.fire("after_step")
            state.step += 1
            if self.steps_per_epoch == 1:
                return loss.detach(), correct
            weighted = loss.detach() * xb.shape[0]
            if loss_total is None:
                loss_total, correct_total = weighted, correct
            else:
                loss_total, correct_total = loss_total + weighted, correct_total + correct
        return loss_total / self.splits.X_train.shape[0], correct_total

    @torch.no_grad()
    def _dev_metrics(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._mode_matters:
            self.model.eval()
        return binary_loss_and_correct(self.model(self.splits.X_dev), self.splits.y_dev,
                                       self._dev_is_one)

    def fit(self) -> TrainerState:
        state = self.state
        n_train = self.splits.X_train.shape[0]
        n_dev = self.splits.X_dev.shape[0]
        start = time.perf_counter()
        self.model.train()
        self.fire("before_fit")
        for epoch in range(1, self.epochs + 1):
            self.fire("before_epoch")
            train_loss, train_correct = self._train_epoch()
            dev_loss, dev_correct = self._dev_metrics()
            # The one host copy of the epoch: four numbers, plus the values callbacks need finite.
            checked = [values(self) for _, values in self._finite_checks]
            tl, tc, dl, dc, *must_be_finite = torch.stack(
                (train_loss, train_correct, dev_loss, dev_correct, *(v for vs in checked for v in vs))
            ).tolist()
            state.epoch = epoch
            metrics = EpochMetrics(epoch, tl, tc / n_train, dl, dc / n_dev)
            state.history.append(metrics)
            state.improved = metrics.dev_acc > state.best_dev_acc
            if state.improved:
                state.best_dev_acc, state.best_epoch = metrics.dev_acc, epoch
            # Gradients first: a bad gradient precedes the losses its step spoils.
            offset = 0
            for (watched, _), values in zip(self._finite_checks, checked, strict=True):
                if not all(map(math.isfinite, must_be_finite[offset : offset + len(values)])):
                    self.request_stop(f"non-finite {watched} at epoch {epoch}")
                offset += len(values)
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
