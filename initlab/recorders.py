"""What the engine measures, over the member axis, and the rows each measurement becomes.

Measured by :mod:`initlab.engine` for every member of a stack at once:

- gradient norms: the L2 norm of every parameter's gradient at every step, after the
  backward pass and before the optimizer step (the engine keeps them in a device buffer);
- at epoch 0 and each log epoch (:func:`log_epochs_due`): every weight (small models
  only), quantiles of every weight matrix (:func:`weight_quantiles`), and one forward pass
  over the whole training set giving per layer mean/std/fraction zero/fraction saturated,
  per unit activity (what the diagnosis needs to call a unit dead or stuck), and per layer
  histograms (:func:`activation_views`).

The row functions below are the record's CSV rows of those measurements; the record's
columns are declared in :data:`initlab.record.COLUMNS`.
"""

from collections.abc import Iterator

import torch

from initlab.budget import HISTOGRAM_BINS, WEIGHT_QUANTILES

# |2a - 1| > 0.97 for sigmoid is the same flat tail as |a| > 0.97 for tanh
# (sigmoid(x) = (tanh(x / 2) + 1) / 2); 0.97 is the threshold of Karpathy's makemore notes.
SATURATION_THRESHOLD = 0.97
# torch.quantile refuses larger inputs; a strided sample keeps the quantiles honest.
QUANTILE_MAX_VALUES = 1 << 24


def log_epoch_due(epoch: int, every: int, epochs: int) -> bool:
    """Whether ``epoch`` is a log epoch: every ``every`` epochs and the last one (a member
    that stops is also measured at its stop)."""
    return epoch % every == 0 or epoch == epochs


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


def saturated_mask(a: torch.Tensor, bounds: tuple[float, float] | None) -> torch.Tensor | None:
    """Where an activation with output range ``bounds`` (its spec's ``bounded``) is in a flat
    tail: farther than SATURATION_THRESHOLD of the half-range from the range's middle. None
    for an unbounded activation (it has no flat tail)."""
    if bounds is None:
        return None
    low, high = bounds
    return (a - (low + high) / 2).abs() > SATURATION_THRESHOLD * (high - low) / 2


def histograms(a: torch.Tensor, bins: int = HISTOGRAM_BINS) -> torch.Tensor:
    """(M, 2 + bins): per member [low, high, counts] of ``a``'s (M, ...) finite values over
    their own range (no range guessed before training; the figure re-bins them onto one grid
    per layer). Values are binned as ``torch.histc`` bins them; a constant tensor has
    low == high and every count in the first bin."""
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


def weight_quantiles(weights: list[torch.Tensor]) -> torch.Tensor:
    """(M, matrices, quantiles): WEIGHT_QUANTILES of each member's weight matrices."""
    q = torch.tensor(WEIGHT_QUANTILES, device=weights[0].device)
    rows = []
    for p in weights:
        w = p.flatten(1).float()
        if w.shape[1] > QUANTILE_MAX_VALUES:
            w = w[:, :: -(-w.shape[1] // QUANTILE_MAX_VALUES)]
        rows.append(torch.quantile(w, q, dim=1).T)
    return torch.stack(rows, 1)


def activation_views(hidden: list[torch.Tensor], bounds: tuple[float, float] | None,
                     with_histograms: bool = True) -> dict[str, torch.Tensor]:
    """From each hidden layer's activations (M, examples, units) on the whole training set:

    - ``units`` (M, layers, units, 2): per unit the fraction of examples with a non-zero
      output (0 = dead) and the fraction in a flat tail (NaN for unbounded activations);
    - ``activations`` (M, layers, 4): per layer mean, std, fraction exactly zero, fraction
      saturated (the layer's fractions are the means of its units': every unit sees the
      same examples);
    - ``activation_hists`` (M, layers, 2 + bins): :func:`histograms` per layer (unless not
      ``with_histograms``: a group record keeps no histograms).
    """
    units, stats, hists = [], [], []
    for a in hidden:
        active = (a != 0).float().mean(1)
        saturated = saturated_mask(a, bounds)
        saturated = (saturated.float().mean(1) if saturated is not None
                     else torch.full_like(active, float("nan")))
        u = torch.stack((active, saturated), 2)
        std, mean = torch.std_mean(a.flatten(1), dim=1, correction=0)
        frac_active, frac_saturated = u.mean(1).unbind(1)
        units.append(u)
        stats.append(torch.stack((mean, std, 1 - frac_active, frac_saturated), 1))
        if with_histograms:
            hists.append(histograms(a))
    views = {"units": torch.stack(units, 1), "activations": torch.stack(stats, 1)}
    if hists:
        views["activation_hists"] = torch.stack(hists, 1)
    return views


# ------------------------------------------------------------------------ the rows
def metric_rows(metrics: list[list[float]], first_epoch: int, n_train: int, n_dev: int
                ) -> list[tuple]:
    """(epoch, train_loss, train_acc, dev_loss, dev_acc) of [train loss, train correct,
    dev loss, dev correct] per epoch, the first being ``first_epoch``."""
    return [(e, tl, tc / n_train, dl, dc / n_dev)
            for e, (tl, tc, dl, dc) in enumerate(metrics, start=first_epoch)]


def weight_rows(names: list[str], snapshots: list[tuple[int, list[list[float]]]]
                ) -> Iterator[tuple[int, str, int, float]]:
    """(epoch, param, flat index, value) for every value of (epoch, per-param values)."""
    for epoch, tensors in snapshots:
        for name, values in zip(names, tensors):
            for index, value in enumerate(values):
                yield epoch, name, index, value


def weight_stats_rows(names: list[str], snapshots: list[tuple[int, list[list[float]]]]
                      ) -> Iterator[tuple]:
    """(epoch, param, min, p05, ..., max) of (epoch, per matrix quantiles) snapshots."""
    for epoch, stats in snapshots:
        for name, values in zip(names, stats):
            yield (epoch, name, *values)


def activation_stats_rows(layers: list[str], stats: list[tuple[int, list[list[float]]]]
                          ) -> Iterator[tuple]:
    """(epoch, layer, mean, std, frac_zero, frac_saturated) of (epoch, per layer 4 values)."""
    for epoch, values_per_layer in stats:
        for layer, values in zip(layers, values_per_layer):
            yield (epoch, layer, *values)


def unit_rows(layers: list[str], units: list[tuple[int, list[list[list[float]]]]]) -> Iterator[tuple]:
    """(epoch, layer, unit, frac_active, frac_saturated) of (epoch, per layer per unit 2 values)."""
    for epoch, per_layer in units:
        for layer, values in zip(layers, per_layer, strict=True):
            for unit, (active, saturated) in enumerate(values):
                yield epoch, layer, unit, active, saturated


def histogram_rows(layers: list[str], hists: list[tuple[int, list[list[float]]]],
                   bins: int = HISTOGRAM_BINS) -> Iterator[tuple]:
    """(epoch, layer, bin, low, high, count) of (epoch, per layer [low, high, counts])."""
    for epoch, per_layer in hists:
        for layer, values in zip(layers, per_layer):
            low, high, counts = values[0], values[1], values[2:]
            width = (high - low) / bins
            for b, count in enumerate(counts):
                yield epoch, layer, b, low + b * width, low + (b + 1) * width, count
