"""Recorders: callbacks that measure the network during training and save what they saw.

- :class:`GradNormRecorder` — L2 norm of every parameter's gradient at every step, after
  backward and before the optimizer step: one fused norm call per step whose results
  stay on the device and go to the host in chunks, never one ``.item()`` per parameter.
- :class:`WeightRecorder` — full weight snapshots at log epochs (small models only).
- :class:`WeightStatsRecorder` — quantiles of every weight matrix at log epochs (any size).
- :class:`ActivationRecorder` — one forward pass over the whole training set per log
  epoch: per layer mean/std/fraction zero/fraction saturated, per unit activity (what the
  diagnosis needs to call a unit dead or stuck), and per layer histograms.

Log-epoch recorders share :class:`LogEpochRecorder`'s schedule. Recorders only observe;
each writes its files through the run's record writer with ``save(writer)``.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from initlab.callbacks import LogSchedule

# |2a - 1| > 0.97 for sigmoid is the same flat tail as |a| > 0.97 for tanh
# (sigmoid(x) = (tanh(x / 2) + 1) / 2); 0.97 is the threshold of Karpathy's makemore notes.
SATURATION_THRESHOLD = 0.97


def _grad_norms(grads: list[torch.Tensor]) -> list[torch.Tensor]:
    foreach_norm = getattr(torch, "_foreach_norm", None)
    if foreach_norm is not None:
        return foreach_norm(grads)
    return [g.norm() for g in grads]  # older torch: one kernel per tensor


class LogEpochRecorder:
    """A recorder that measures at epoch 0 (right after init) and at each log epoch."""

    def __init__(self, schedule: LogSchedule):
        self.schedule = schedule

    def measure(self, epoch: int) -> None:
        raise NotImplementedError

    def before_fit(self, trainer) -> None:
        self.measure(0)

    def after_epoch(self, trainer) -> None:
        if self.schedule.due(trainer.state.epoch, trainer):
            self.measure(trainer.state.epoch)


class GradNormRecorder:
    """L2 norm of each parameter's gradient at every optimizer step.

    A step costs one fused norm call; its 0-d results stay on the device in a list and
    are stacked and copied to the host once per ``chunk_steps`` steps and at the end.
    It also hands the trainer the epoch's norms (:meth:`epoch_must_be_finite`), which ride
    along in its one host copy per epoch, so a NaN/Inf gradient stops the fit that epoch.
    """

    watches = "gradient norms"  # named in the trainer's stop reason
    # More norms than this in one epoch are checked through their sum, which is NaN/Inf iff
    # one of them is (barring an overflow of the sum that only exploding norms reach).
    max_epoch_values = 1024

    def __init__(self, model: nn.Module, chunk_steps: int = 4096):
        self.names = [name for name, _ in model.named_parameters()]
        self._params = [p for _, p in model.named_parameters()]
        self._chunk_steps = chunk_steps
        self._pending: list[torch.Tensor] = []  # 0-d norms, step-major
        self._host_chunks: list[torch.Tensor] = []
        # Sums of this epoch's norms already flushed, and where its unflushed norms start.
        self._epoch_flushed: list[torch.Tensor] | None = None
        self._epoch_start = 0

    def before_fit(self, trainer) -> None:
        self._steps_per_epoch = trainer.steps_per_epoch
        self._pending = []
        self._host_chunks = []
        self._written_steps = 0
        self._no_grad = torch.zeros((), device=self._params[0].device)  # norm of a missing grad

    def after_backward(self, trainer) -> None:
        grads = [p.grad if p.grad is not None else self._no_grad for p in self._params]
        self._pending.extend(_grad_norms(grads))
        if len(self._pending) >= self._chunk_steps * len(self._params):
            self._flush()

    def after_fit(self, trainer) -> None:
        self._flush()

    def before_epoch(self, trainer) -> None:
        self._epoch_flushed = []
        self._epoch_start = len(self._pending)

    def epoch_must_be_finite(self, trainer) -> list[torch.Tensor]:
        """0-d device tensors that are all finite iff every gradient norm of this epoch is.

        Usually the norms themselves: the trainer stacks them with its own four numbers,
        so checking costs no extra kernel and no extra host copy.
        """
        values = self._epoch_flushed + self._pending[self._epoch_start :]
        if len(values) > self.max_epoch_values:
            return [torch.stack(values).sum()]
        return values

    def _flush(self) -> None:
        if self._pending:
            flat = torch.stack(self._pending)
            if self._epoch_flushed is not None and len(flat) > self._epoch_start:
                self._epoch_flushed.append(flat[self._epoch_start :].sum())
            self._host_chunks.append(flat.view(-1, len(self._params)).to("cpu", copy=True))
        self._pending = []
        self._epoch_start = 0

    def norms(self) -> torch.Tensor:
        """(steps, params) float tensor of every norm recorded and not yet streamed to
        grad_norms.csv (:meth:`new_rows`), on the host."""
        if not self._host_chunks:
            return torch.empty(0, len(self.names))
        return torch.cat(self._host_chunks)

    def new_rows(self) -> Iterator[tuple[int, int, str, float]]:
        """(step, epoch, param, norm) of every step not handed out before: what
        grad_norms.csv has not got yet. Moves the pending norms to the host first."""
        self._flush()
        # Streamed chunks leave host memory: a long run holds only what is not written yet.
        chunks, self._host_chunks = self._host_chunks, []
        step = self._written_steps
        for chunk in chunks:
            yield from grad_norm_rows(self.names, chunk, self._steps_per_epoch, step)
            step += len(chunk)
        self._written_steps = step

    def start(self, writer) -> None:
        writer.start_csv("grad_norms.csv")

    def stream(self, writer) -> None:
        """Append the rows recorded since the last call to grad_norms.csv."""
        writer.append_csv("grad_norms.csv", self.new_rows())

    save = stream  # at the end of a fit: the rows not streamed yet


class WeightRecorder(LogEpochRecorder):
    """Every weight and bias value at epoch 0 and at each log epoch (small models only)."""

    def __init__(self, model: nn.Module, schedule: LogSchedule):
        super().__init__(schedule)
        self.names = [name for name, _ in model.named_parameters()]
        self._params = [p for _, p in model.named_parameters()]
        self.snapshots: list[tuple[int, list[torch.Tensor]]] = []

    def measure(self, epoch: int) -> None:
        flat = torch.cat([p.detach().reshape(-1) for p in self._params]).cpu()
        sizes = [p.numel() for p in self._params]
        self.snapshots.append((epoch, list(flat.split(sizes))))

    def rows(self) -> Iterator[tuple[int, str, int, float]]:
        """(epoch, param, flat index, value) for every recorded value."""
        return weight_rows(self.names, self.snapshots)

    def save(self, writer) -> None:
        writer.write_csv("weights.csv", self.rows())


@contextmanager
def capture_outputs(modules: dict[str, nn.Module]):
    """Forward hooks that store each module's output under its key; always removed."""
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for key, module in modules.items():
            handles.append(module.register_forward_hook(
                lambda _m, _inp, out, key=key: outputs.__setitem__(key, out.detach())
            ))
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def hidden_outputs(model: nn.Module, X: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every hidden layer's activations on ``X`` in eval mode (the training mode is restored)."""
    was_training = model.training
    model.eval()
    with capture_outputs(model.hidden_activations()) as outputs:
        model(X)
    model.train(was_training)
    return outputs


def saturated_mask(a: torch.Tensor, bounded: str | None) -> torch.Tensor | None:
    """Where a bounded activation is in its flat tail; None for unbounded activations
    (they have no flat tail)."""
    if bounded == "sigmoid":
        return (2 * a - 1).abs() > SATURATION_THRESHOLD
    if bounded == "tanh":
        return a.abs() > SATURATION_THRESHOLD
    return None


def activation_stats(a: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """[mean, std, fraction exactly zero, fraction saturated] of one layer's activations.

    ``units`` is the layer's :func:`unit_activity`; the layer's fractions are the means of
    its units' (every unit sees the same examples), so they cost no pass over ``a``.
    """
    std, mean = torch.std_mean(a, correction=0)
    frac_active, frac_saturated = units.mean(0)
    return torch.stack((mean, std, 1 - frac_active, frac_saturated))


def unit_activity(a: torch.Tensor, bounded: str | None) -> torch.Tensor:
    """(units, 2): per unit, the fraction of examples with a non-zero output (0 = dead)
    and the fraction in the flat tail (NaN for unbounded activations)."""
    active = (a != 0).float().mean(0)
    saturated = saturated_mask(a, bounded)
    saturated = (saturated.float().mean(0) if saturated is not None
                 else torch.full_like(active, float("nan")))
    return torch.stack((active, saturated), dim=1)


HISTOGRAM_BINS = 40


def histogram_on_own_range(a: torch.Tensor, bins: int) -> torch.Tensor:
    """[low, high, count_1 .. count_bins] of ``a``'s finite values over their own range.

    The values are mapped onto [0, 1] on the device, so ``torch.histc`` needs no range
    from the host (no sync); non-finite values fall outside and are not counted. A
    constant tensor has low == high and every count in the first bin.
    """
    a = a.reshape(-1).float()
    finite = torch.isfinite(a)
    low = torch.where(finite, a, torch.inf).amin()
    high = torch.where(finite, a, -torch.inf).amax()
    span = (high - low).clamp_min(torch.finfo(torch.float32).tiny)
    counts = torch.histc((a - low) / span, bins=bins, min=0.0, max=1.0)
    return torch.cat((torch.stack((low, high)), counts))


class ActivationRecorder(LogEpochRecorder):
    """Every hidden layer's activations on the full training set, at log epochs.

    One forward pass per log epoch gives three views, copied to the host together:
    - ``stats``: per layer mean, std, fraction exactly zero, fraction saturated;
    - ``units``: per unit fraction active and fraction saturated — a unit counts as dead
      only if it is zero on *every* training example, so this is never a mini-batch;
    - ``histograms``: per layer histogram over the layer's own range at that epoch (no
      range guessed before training; the figure re-bins them onto one grid per layer).
    """

    def __init__(self, model: nn.Module, X_train: torch.Tensor, bounded: str | None,
                 schedule: LogSchedule, bins: int = HISTOGRAM_BINS):
        super().__init__(schedule)
        self.model = model
        self.X_train = X_train
        self.bounded = bounded
        self.bins = bins
        self.layers = list(model.hidden_activations())
        self.stats: list[tuple[int, torch.Tensor]] = []  # (epoch, (layers, 4))
        self.units: list[tuple[int, list[torch.Tensor]]] = []  # (epoch, per layer (units, 2))
        self.histograms: list[tuple[int, torch.Tensor]] = []  # (epoch, (layers, 2 + bins))

    @torch.no_grad()
    def measure(self, epoch: int) -> None:
        if not self.layers:
            return
        outputs = hidden_outputs(self.model, self.X_train)
        acts = [outputs[k] for k in self.layers]
        units = [unit_activity(a, self.bounded) for a in acts]
        stats = torch.stack([activation_stats(a, u) for a, u in zip(acts, units)])
        hists = torch.stack([histogram_on_own_range(a, self.bins) for a in acts])
        parts = [stats, hists, *units]
        # One host copy per log epoch for all three views.
        host = torch.cat([t.reshape(-1) for t in parts]).cpu().split([t.numel() for t in parts])
        self.stats.append((epoch, host[0].view(stats.shape)))
        self.histograms.append((epoch, host[1].view(hists.shape)))
        self.units.append((epoch, [h.view(u.shape) for h, u in zip(host[2:], units)]))

    def stats_rows(self) -> Iterator[tuple]:
        """(epoch, layer, mean, std, frac_zero, frac_saturated) per layer per log epoch."""
        return activation_stats_rows(self.layers, self.stats)

    def unit_rows(self) -> Iterator[tuple]:
        """(epoch, layer, unit, frac_active, frac_saturated) per unit per log epoch."""
        return unit_rows(self.layers, self.units)

    def histogram_rows(self) -> Iterator[tuple]:
        """(epoch, layer, bin, low, high, count) per bin per layer per log epoch."""
        return histogram_rows(self.layers, self.histograms, self.bins)

    def save(self, writer) -> None:
        writer.write_csv("activations.csv", self.stats_rows())
        writer.write_csv("units.csv", self.unit_rows())
        writer.write_csv("activation_hists.csv", self.histogram_rows())


WEIGHT_QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)  # the columns of weight_stats.csv
# torch.quantile refuses larger inputs; a strided sample keeps the quantiles honest.
QUANTILE_MAX_VALUES = 1 << 24


class WeightStatsRecorder(LogEpochRecorder):
    """Quantiles of every weight matrix (biases excluded) at epoch 0 and each log epoch."""

    def __init__(self, model: nn.Module, schedule: LogSchedule):
        super().__init__(schedule)
        named = [(n, p) for n, p in model.named_parameters() if n.endswith("weight")]
        self.names = [n for n, _ in named]
        self._params = [p for _, p in named]
        self._q = torch.tensor(WEIGHT_QUANTILES, device=self._params[0].device)
        self.snapshots: list[tuple[int, torch.Tensor]] = []  # (epoch, (params, quantiles))

    @torch.no_grad()
    def measure(self, epoch: int) -> None:
        rows = []
        for p in self._params:
            w = p.detach().reshape(-1).float()
            if w.numel() > QUANTILE_MAX_VALUES:
                w = w[:: -(-w.numel() // QUANTILE_MAX_VALUES)]
            rows.append(torch.quantile(w, self._q))
        self.snapshots.append((epoch, torch.stack(rows).cpu()))

    def rows(self) -> Iterator[tuple]:
        """(epoch, param, min, p05, p25, p50, p75, p95, max) per weight matrix per log epoch."""
        return weight_stats_rows(self.names, self.snapshots)

    def save(self, writer) -> None:
        writer.write_csv("weight_stats.csv", self.rows())


# Row formats of the recorders' CSVs, shared with the stacked trainer (initlab.batched),
# so a record reads the same whoever wrote it.
def grad_norm_rows(names: list[str], norms: torch.Tensor, steps_per_epoch: int,
                   first_step: int = 0) -> Iterator[tuple[int, int, str, float]]:
    """(step, epoch, param, norm) of a (steps, params) host tensor whose first row is
    ``first_step``."""
    for step, row in enumerate(norms.tolist(), start=first_step):
        epoch = step // steps_per_epoch + 1
        for name, value in zip(names, row):
            yield step, epoch, name, value


def weight_rows(names: list[str], snapshots: list[tuple[int, list[torch.Tensor]]]
                ) -> Iterator[tuple[int, str, int, float]]:
    """(epoch, param, flat index, value) for every value of (epoch, per-param tensors)."""
    for epoch, tensors in snapshots:
        for name, values in zip(names, tensors):
            for index, value in enumerate(values.tolist()):
                yield epoch, name, index, value


def weight_stats_rows(names: list[str], snapshots: list[tuple[int, torch.Tensor]]) -> Iterator[tuple]:
    """(epoch, param, min, p05, ..., max) of (epoch, (params, quantiles)) snapshots."""
    for epoch, stats in snapshots:
        for name, values in zip(names, stats.tolist()):
            yield (epoch, name, *values)


def activation_stats_rows(layers: list[str], stats: list[tuple[int, torch.Tensor]]) -> Iterator[tuple]:
    """(epoch, layer, mean, std, frac_zero, frac_saturated) of (epoch, (layers, 4)) entries."""
    for epoch, values_per_layer in stats:
        for layer, values in zip(layers, values_per_layer.tolist()):
            yield (epoch, layer, *values)


def unit_rows(layers: list[str], units: list[tuple[int, list[torch.Tensor]]]) -> Iterator[tuple]:
    """(epoch, layer, unit, frac_active, frac_saturated) of (epoch, per layer (units, 2))."""
    for epoch, per_layer in units:
        for layer, values in zip(layers, per_layer, strict=True):
            for unit, (active, saturated) in enumerate(values.tolist()):
                yield epoch, layer, unit, active, saturated


def histogram_rows(layers: list[str], histograms: list[tuple[int, torch.Tensor]],
                   bins: int) -> Iterator[tuple]:
    """(epoch, layer, bin, low, high, count) of (epoch, (layers, 2 + bins)) entries."""
    for epoch, hists in histograms:
        for layer, values in zip(layers, hists.tolist()):
            low, high, counts = values[0], values[1], values[2:]
            width = (high - low) / bins
            for b, count in enumerate(counts):
                yield epoch, layer, b, low + b * width, low + (b + 1) * width, count
