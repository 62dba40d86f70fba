"""Callback plumbing shared by recorders and the run: schedules, progress, checkpoints, live log.

A callback is any object with methods named after trainer events (see
``initlab.trainer.EVENTS``); this module holds the ones that are not measurements.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LogSchedule:
    """Log epochs as data: every ``every`` epochs, plus the last epoch of the fit
    (the planned last one, or the one where a stop was requested)."""

    every: int

    def due(self, epoch: int, trainer) -> bool:
        return (
            epoch % self.every == 0
            or epoch == trainer.epochs
            or trainer.state.stop_reason is not None
        )


def cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached host copy of the model's parameters, safe to keep while training goes on."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class Checkpointer:
    """Keeps the state right after initialization, the best-on-dev state and the last state.

    The copies live in memory and are written once, by the run, at the end; the best
    copy is refreshed only on epochs where dev accuracy improved.
    """

    def __init__(self):
        self.init_state: dict[str, torch.Tensor] | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.last_state: dict[str, torch.Tensor] | None = None

    def before_fit(self, trainer) -> None:
        self.init_state = cpu_state_dict(trainer.model)

    def after_eval(self, trainer) -> None:
        if trainer.state.improved:
            self.best_state = cpu_state_dict(trainer.model)

    def after_fit(self, trainer) -> None:
        self.last_state = cpu_state_dict(trainer.model)
        if self.best_state is None:  # stopped before any evaluation
            self.best_state = self.last_state


class ProgressBar:
    """A rich progress bar over epochs, showing the latest train loss and dev accuracy.

    Redrawn at most every ``min_redraw_s`` seconds (a redraw costs ~0.4 ms), so a fast
    10 000-epoch run does not pay for 10 000 redraws and a slow one still moves.
    """

    min_redraw_s = 0.25

    def __init__(self, console, description: str = "training"):
        self.console = console
        self.description = description
        self._progress = None
        self._task = None
        self._last_redraw = 0.0

    def before_fit(self, trainer) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
            # No background refresh thread competing with training for the GIL: the bar
            # is redrawn only when after_epoch asks for it.
            auto_refresh=False,
        )
        self._task = self._progress.add_task(self.description, total=trainer.epochs, status="")
        self._progress.start()

    def after_epoch(self, trainer) -> None:
        now = time.monotonic()
        if now - self._last_redraw >= self.min_redraw_s:
            self._last_redraw = now
            self._redraw(trainer)

    def after_fit(self, trainer) -> None:
        self._redraw(trainer)
        self._progress.stop()

    def _redraw(self, trainer) -> None:
        history = trainer.state.history
        status = f"loss {history[-1].train_loss:.4f}  dev acc {history[-1].dev_acc:.3f}" if history else ""
        self._progress.update(self._task, completed=trainer.state.epoch, status=status, refresh=True)


def spread_log_epochs(every: int, epochs: int, count: int) -> list[int]:
    """At most ``count`` log epochs (0 = right after init), evenly spread, first and last kept.

    The log epochs are 0, every, 2·every, ... and the last epoch; they are picked by index
    in closed form, never listed, so ``epochs=10**9`` costs no more than ``epochs=20``.
    """
    if count < 2:
        raise ValueError(f"count must be >= 2 to keep the first and the last epoch (got {count})")
    multiples = epochs // every  # 0, every, ..., multiples·every; then epochs, if not one of them
    last = multiples + (epochs % every != 0)  # index of the last log epoch

    def log_epoch(index: int) -> int:
        return index * every if index <= multiples else epochs

    if last + 1 <= count:
        return [log_epoch(i) for i in range(last + 1)]
    return sorted({log_epoch(round(i * last / (count - 1))) for i in range(count)})


class EpochCheckpointer:
    """Host copies of the model at a few chosen epochs, plus the epoch a stop was asked at.

    They feed figures of how the model changed (the decision boundary at several log
    epochs). The copies stay in memory and are written once at the end, so the run
    enables this only for small models and a handful of epochs.
    """

    def __init__(self, epochs: list[int]):
        # A handful of epochs (spread_log_epochs), never one entry per epoch of the fit.
        self.epochs = frozenset(epochs)
        self.states: dict[int, dict[str, torch.Tensor]] = {}

    def before_fit(self, trainer) -> None:
        if 0 in self.epochs:
            self.states[0] = cpu_state_dict(trainer.model)

    def after_epoch(self, trainer) -> None:
        epoch = trainer.state.epoch
        if epoch in self.epochs or trainer.state.stop_reason is not None:
            self.states[epoch] = cpu_state_dict(trainer.model)

    def save(self, writer) -> None:
        from initlab.record import EPOCH_CHECKPOINTS

        writer.save_tensors(EPOCH_CHECKPOINTS, self.states)


class LiveRecord:
    """Writes the record as training goes, so a kill keeps all but the last few seconds.

    At a log epoch, once at least ``min_interval_s`` passed since the last write (a short
    run writes once, at the end): the new rows of metrics.csv, of every stream's CSV
    (``stream.start(writer)`` / ``stream.stream(writer)``, e.g. the gradient norms), then
    ``on_flush(trainer)``, which refreshes summary.json. :meth:`flush` is also the run's
    last write of those files.
    """

    def __init__(self, writer, schedule: LogSchedule, streams: list, on_flush: Callable,
                 min_interval_s: float = 5.0):
        self.writer = writer
        self.schedule = schedule
        self.streams = streams
        self.on_flush = on_flush
        self.min_interval_s = min_interval_s
        self._metrics_written = 0
        self._last_flush = 0.0

    def before_fit(self, trainer) -> None:
        self.writer.start_csv("metrics.csv")
        for stream in self.streams:
            stream.start(self.writer)
        self._last_flush = time.monotonic()

    def after_epoch(self, trainer) -> None:
        if (self.schedule.due(trainer.state.epoch, trainer)
                and time.monotonic() - self._last_flush >= self.min_interval_s):
            self.flush(trainer)

    def flush(self, trainer) -> None:
        history = trainer.state.history
        self.writer.append_csv("metrics.csv", (
            (m.epoch, m.train_loss, m.train_acc, m.dev_loss, m.dev_acc)
            for m in history[self._metrics_written:]
        ))
        self._metrics_written = len(history)
        for stream in self.streams:
            stream.stream(self.writer)
        self.on_flush(trainer)
        self._last_flush = time.monotonic()
