"""Refuse, before training, what this machine clearly cannot run: a record or memory that
cannot fit, settings past its cores or reach; and size a batched stack to its memory.

:func:`estimate` is pure arithmetic over the composed config (no torch): the run's peak
host memory and its record on disk. :func:`check_budget` compares them with what the
system has, and raises :class:`~initlab.config.ConfigError` in one line naming the cause
and the fix, only when the estimate is over :data:`FIT_FRACTION` of what is available and
over :data:`MIN_REFUSED_BYTES` (small runs on a nearly full disk are left to the record's
own full-disk handling). Byte counts were measured on the record's CSVs and CPython objects.
"""

import math
import os
import shutil
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from initlab.config import ConfigError

FIT_FRACTION, MIN_REFUSED_BYTES = 0.8, 1 << 30  # refuse above both

FLOAT = 4  # float32 tensors everywhere
# The record's sizes, here (torch-free) and read by the code that spends them (engine,
# recorders): model copies at a few log epochs, small models only (boundary small multiples);
EPOCH_CHECKPOINT_COUNT, EPOCH_CHECKPOINT_MAX_PARAMS = 6, 100_000
HISTOGRAM_BINS = 40  # bins of a layer's activation histogram at a log epoch
WEIGHT_QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)  # the columns of weight_stats.csv
# Gradient norms held on the device before one copy to the host: about 64 MB of float32.
GRAD_NORM_CHUNK_VALUES = 1 << 24

# Bytes per CSV row on disk (measured on records of the default run, rounded up).
CSV_ROW_BYTES = {"grad_norms.csv": 40, "metrics.csv": 64, "units.csv": 32, "activations.csv": 68,
                 "activation_hists.csv": 56, "weight_stats.csv": 152, "weights.csv": 40}
# Bytes of host memory per row once the record is read back (a dict of parsed values per
# row, for the diagnosis after training), and per 0-d device tensor / epoch in training.
READ_ROW_BYTES = 400
EPOCH_METRICS_BYTES = 240  # one EpochMetrics of TrainerState.history
FIXED_DISK_BYTES = 16 << 20  # summary.json, tables, the figures of the report step
FIXED_MEMORY_BYTES = 512 << 20  # the interpreter with torch loaded (~450 MB RSS measured)


@dataclass
class Item:
    """One thing the run spends bytes on, the config values that drive it (``cause``:
    "trainer.epochs=1000000000") and how to shrink it."""

    what: str
    nbytes: float
    cause: str
    fix: str


@dataclass
class Estimate:
    memory: list[Item] = field(default_factory=list)  # host memory at the run's peak
    disk: list[Item] = field(default_factory=list)  # the record on disk

    @property
    def memory_bytes(self) -> float:
        return sum(i.nbytes for i in self.memory)

    @property
    def disk_bytes(self) -> float:
        return sum(i.nbytes for i in self.disk)


def log_epoch_count(every: int, epochs: int) -> int:
    """Epoch 0, every multiple of ``every`` up to ``epochs``, and ``epochs`` itself."""
    return epochs // every + 1 + (epochs % every != 0)


def layer_shapes(model: Any, in_features: int) -> list[tuple[int, int]]:
    """(in, out) of fc1..fcN: in_features -> width -> ... -> width -> 1."""
    sizes = [in_features] + [model.width] * (model.depth - 1) + [1]
    return list(zip(sizes[:-1], sizes[1:]))


def estimate(cfg: Any) -> Estimate:
    """Peak host memory and record size of the run ``cfg`` describes (see the module doc)."""
    d, m, t = cfg.data, cfg.model, cfg.trainer
    wanted = set(t.recorders)
    shapes = layer_shapes(m, d.dim)
    params = sum(i * o + o for i, o in shapes)
    tensors = 2 * len(shapes)
    hidden = m.depth - 1
    batch = d.n_train if t.batch_size is None else min(t.batch_size, d.n_train)
    steps = t.epochs * math.ceil(d.n_train / batch)
    logs = log_epoch_count(t.log_every, t.epochs)
    est = Estimate()
    mem, disk = est.memory.append, est.disk.append

    size = f"model.width={m.width} model.depth={m.depth}"
    shrink = "lower model.width or model.depth"
    optimizer = 2 if cfg.optim.name == "adam" else int(cfg.optim.get("momentum", 0) > 0)
    epoch_copies = min(EPOCH_CHECKPOINT_COUNT, logs) if params <= EPOCH_CHECKPOINT_MAX_PARAMS else 0
    copies = 2 + optimizer + 3 + epoch_copies  # model, grads, optimizer; init/best/last, epochs
    mem(Item("Python, torch and initlab", FIXED_MEMORY_BYTES, "the process", "free some memory"))
    mem(Item(f"{params:,} parameters x {copies} copies", params * FLOAT * copies, size, shrink))
    save_tensors = cfg.trainer.get("save_tensors", True)
    if save_tensors:
        disk(Item("checkpoints", params * FLOAT * (3 + epoch_copies), size, shrink))
    samples = d.n_samples * (d.dim + 1) * FLOAT
    mem(Item("the data", 2 * samples, f"data.n_samples={d.n_samples}", "lower data.n_samples"))
    if save_tensors:
        disk(Item("the data in data.pt", samples, f"data.n_samples={d.n_samples}",
                  "lower data.n_samples"))
    # Training keeps each hidden layer's input and output of a batch for backward.
    mem(Item("activations of a training batch", 2 * batch * m.width * hidden * FLOAT,
             f"{size} trainer.batch_size={t.batch_size}", f"{shrink} or set trainer.batch_size"))
    disk(Item("summary, tables and figures", FIXED_DISK_BYTES, "the report", "report=minimal"))

    epochs = f"trainer.epochs={t.epochs}"
    mem(Item("per-epoch metrics", t.epochs * (EPOCH_METRICS_BYTES + READ_ROW_BYTES), epochs,
             "lower trainer.epochs"))
    disk(Item("per-epoch metrics in metrics.csv", t.epochs * CSV_ROW_BYTES["metrics.csv"],
              epochs, "lower trainer.epochs"))
    if "grad_norms" in wanted:
        rows = steps * tensors
        cause = epochs + (f" trainer.batch_size={t.batch_size}" if batch < d.n_train else "")
        fix = "lower trainer.epochs or drop grad_norms from trainer.recorders"
        pending = min(steps * tensors, GRAD_NORM_CHUNK_VALUES) * FLOAT
        mem(Item("gradient norms", rows * (FLOAT + READ_ROW_BYTES) + pending, cause, fix))
        disk(Item("gradient norms in grad_norms.csv", rows * CSV_ROW_BYTES["grad_norms.csv"],
                  cause, fix))
    per_log = f"{epochs} trainer.log_every={t.log_every}"
    if "activations" in wanted and hidden >= 1:
        units = hidden * m.width
        # The pass over the training set holds every hidden output, plus a few per-layer
        # temporaries (activity masks, the histogram's rescaled copy).
        mem(Item("the activation pass over the training set",
                 (hidden + 3) * d.n_train * m.width * FLOAT,
                 f"data.n_train={d.n_train} {size}", "lower data.n_train, model.width or model.depth"))
        fix = "raise trainer.log_every or drop activations from trainer.recorders"
        rows = logs * (units + hidden * (HISTOGRAM_BINS + 1))
        mem(Item("activation statistics", logs * (2 * units + hidden * (HISTOGRAM_BINS + 6)) * FLOAT
                 + rows * READ_ROW_BYTES, per_log, fix))
        disk(Item("activation statistics in units.csv and activation_hists.csv",
                  logs * (units * CSV_ROW_BYTES["units.csv"]
                          + hidden * HISTOGRAM_BINS * CSV_ROW_BYTES["activation_hists.csv"]
                          + hidden * CSV_ROW_BYTES["activations.csv"]), per_log, fix))
    if "weights" in wanted:
        fix = "raise trainer.log_every or drop weights from trainer.recorders"
        values = params if params <= t.weights_max_params else 0
        mem(Item("weight snapshots", logs * (values * (FLOAT + READ_ROW_BYTES)
                                             + m.depth * (len(WEIGHT_QUANTILES) * FLOAT + READ_ROW_BYTES)),
                 per_log, fix))
        disk(Item("weight snapshots in weights.csv and weight_stats.csv",
                  logs * (values * CSV_ROW_BYTES["weights.csv"]
                          + m.depth * CSV_ROW_BYTES["weight_stats.csv"]), per_log, fix))
    return est


def available_memory() -> int | None:
    """MemAvailable of /proc/meminfo in bytes; None where it cannot be read."""
    with suppress(OSError, ValueError, IndexError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def existing_ancestor(path: Path) -> Path:
    """``path`` itself or its nearest ancestor that exists (the run dir is made later)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_disk(path: Path) -> tuple[Path, int | None]:
    where = existing_ancestor(path)
    try:
        return where, shutil.disk_usage(where).free
    except OSError:
        return where, None


def human_bytes(n: float) -> str:
    unit = "B"
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            break
        n /= 1000
    return f"{n:.3g} {unit}" if unit != "B" else f"{n:.0f} B"


def _too_big(total: float, available: int | None) -> bool:
    return available is not None and total > MIN_REFUSED_BYTES and total > FIT_FRACTION * available


def _culprits(items: list[Item], total: float, available: int) -> list[Item]:
    """The largest items, as many as it takes for the rest to fit (at most three)."""
    ranked = sorted(items, key=lambda i: i.nbytes, reverse=True)
    taken: list[Item] = []
    for item in ranked[:3]:
        taken.append(item)
        total -= item.nbytes
        if total <= FIT_FRACTION * available:
            break
    return taken


def _detail(culprits: list[Item], total: float) -> str:
    """', mostly X' / ', ~N of it X' for one culprit, ' (~N of X, ~M of Y)' for more."""
    if len(culprits) == 1:
        top = culprits[0]
        if top.nbytes >= 0.5 * total:
            return f", mostly {top.what}"
        return f", ~{human_bytes(top.nbytes)} of it {top.what}"
    return " (" + ", ".join(f"~{human_bytes(i.nbytes)} of {i.what}" for i in culprits) + ")"


# Deeper is refused: each layer is Python ops per step, so 100,000 layers spend minutes
# before an epoch ends (and a signal waits as long). The papers' deepest is 30.
MAX_DEPTH = 4096


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_machine(cfg: Any) -> None:
    """What would crash or hang here, refused before torch sees it: more threads than cores
    (torch's pool segfaults at 100,000), a depth past MAX_DEPTH."""
    threads, depth, n = cfg.trainer.threads, cfg.model.depth, cores()
    if threads is not None and threads > n:
        raise ConfigError(f"trainer.threads={threads} is more than the {n} CPU cores here; "
                          f"use trainer.threads={n} or fewer (null: torch's default)")
    if depth > MAX_DEPTH:
        raise ConfigError(f"model.depth={depth} is beyond the {MAX_DEPTH} layers initlab trains "
                          "(each layer costs Python time per step); lower model.depth")


def members_that_fit(cfg: Any, memory: int | None) -> int | None:
    """How many members of ``cfg``'s shape one stack holds in ``memory`` bytes (None: no
    bound): the process once, then each member's share of :func:`estimate`."""
    if memory is None:
        return None
    each = max(1.0, estimate(cfg).memory_bytes - FIXED_MEMORY_BYTES)
    return max(1, int((FIT_FRACTION * memory - FIXED_MEMORY_BYTES) // each))


SYSTEM = "system"  # check_budget: ask the system what is available


def check_budget(cfg: Any, out_dir: Path, memory: int | None | str = SYSTEM,
                 disk: int | None | str = SYSTEM) -> None:
    """Raise ConfigError in one line when the run ``cfg`` clearly cannot fit, or the
    machine cannot run it. ``memory`` and ``disk`` (bytes; None skips) default to what the
    system says (MemAvailable, the free space of ``out_dir``'s nearest existing ancestor)."""
    check_machine(cfg)
    est = estimate(cfg)
    where = existing_ancestor(out_dir)
    if memory == SYSTEM:
        memory = available_memory()
    if disk == SYSTEM:
        where, disk = free_disk(out_dir)
    parts, culprits = [], []
    if _too_big(est.disk_bytes, disk):
        top = _culprits(est.disk, est.disk_bytes, disk)
        parts.append(f"record ~{human_bytes(est.disk_bytes)}{_detail(top, est.disk_bytes)} "
                     f"(free disk under {where}: {human_bytes(disk)})")
        culprits += top
    if _too_big(est.memory_bytes, memory):
        top = _culprits(est.memory, est.memory_bytes, memory)
        parts.append(f"hold ~{human_bytes(est.memory_bytes)} in memory"
                     f"{_detail(top, est.memory_bytes)} (available: {human_bytes(memory)})")
        culprits += top
    if not parts:
        return
    causes = " ".join(dict.fromkeys(key for c in culprits for key in c.cause.split()))
    fixes = list(dict.fromkeys(c.fix for c in culprits))
    # "lower trainer.epochs" says nothing that "lower trainer.epochs or ..." does not.
    fixes = "; ".join(f for f in fixes if not any(f != g and f in g for g in fixes))
    raise ConfigError(f"{causes} would {' and '.join(parts)}; {fixes}")
