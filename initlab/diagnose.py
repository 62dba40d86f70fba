"""Diagnosis: what went wrong in a run, in plain words, with the evidence and a fix.

This module owns the findings: pure functions over a :class:`~initlab.record.RunRecord`
(never a live model), so ``initlab report DIR`` re-diagnoses any saved run. Each finding
has a stable ``code`` (see :data:`CODES`), the layers concerned, the first epoch it was
seen, the measured value, the threshold it crossed, a one-sentence message and a fix.
Thresholds come from the run's ``diagnose`` config (:class:`initlab.config.DiagnoseConfig`,
whose comments and docs/diagnosis.md give each default and its source).

Rules shared by every finding:
- A message states only what the record shows (numbers, steps, epochs), never a guess.
- Once a value turned NaN/Inf, later snapshots describe a broken network, not the
  configuration: activity and weight findings look only at epochs before the first
  non-finite value, gradient findings only at finite norms.
- Activity and weight findings describe the end of the run (the last trusted snapshot);
  ``first_epoch`` is where the condition started holding without a break until then.
"""

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from initlab.config import DiagnoseConfig
from initlab.options import ACTIVATIONS
from initlab.record import COLUMNS, FLOAT_FORMAT, GradNormTable, RunRecord, layer_number, layer_of

# In the order they are reported: a broken run first, then causes, then the symptom.
CODES = (
    "non_finite",
    "symmetric_weights",
    "dead_units",
    "saturation",
    "vanishing_gradient",
    "exploding_gradient",
    "not_learning",
)
NO_PROBLEMS = "no problems found"

# Slope of tanh where |tanh| = 0.97 (the recorders' saturation threshold), relative to its
# peak of 1: 1 - 0.97**2 = 0.059. Sigmoid is a scaled tanh, so the same share holds for it.
SATURATED_SLOPE_SHARE = 1 - 0.97**2
# Relative differences below float32's resolution are rounding, not learning.
FLOAT32_EPS = 2.0**-23


@dataclass
class Finding:
    """One problem seen in a run; ``as_dict`` is what ``summary.json["diagnosis"]`` holds."""

    code: str
    layers: list[str]
    first_epoch: int | None
    value: float | None
    threshold: float | None
    message: str
    fix: str

    def as_dict(self) -> dict[str, Any]:
        """As summary.json holds it: the value in the record's number format, so a finding
        made from the run in memory reads the same as one made from its files."""
        out = asdict(self)
        if isinstance(self.value, float):
            out["value"] = float(FLOAT_FORMAT % self.value)
        return out


# ------------------------------------------------------------------------ the run's facts
def thresholds_of(record: RunRecord) -> dict[str, Any]:
    """The run's diagnose config over the schema defaults (old runs have none saved)."""
    saved = (record.summary.get("config") or record.config or {}).get("diagnose") or {}
    return {**asdict(DiagnoseConfig()), **saved}


def _g(x: float) -> str:
    """A number in a sentence: 3 significant digits, scientific when tiny or huge."""
    if x is None or not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.3g}"
    return f"{x:.2e}"


def _sentence(text: str) -> str:
    """Capitalize the first letter only (str.capitalize would lower-case "ReLU")."""
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


# A sentence names at most this many items; a 500-layer net gets "a, b, c, … and z
# (219 in all)", so a message stays readable (and its size bounded) at any depth.
MAX_NAMED = 6


def _names(items: Iterable[str]) -> str:
    items = list(items)
    if len(items) <= 2:
        return " and ".join(items)
    if len(items) > MAX_NAMED:
        head, tail = items[: MAX_NAMED - 2], items[-1]
        return f"{', '.join(head)}, … and {tail} ({len(items)} in all)"
    return ", ".join(items[:-1]) + " and " + items[-1]


def layer_list(layers: list[str]) -> str:
    """Layers for a table cell: all of them, or the first few, "…", the last and a count."""
    if len(layers) <= MAX_NAMED:
        return ", ".join(layers)
    return f"{', '.join(layers[: MAX_NAMED - 2])}, …, {layers[-1]} ({len(layers)} layers)"


@dataclass
class RunFacts:
    """What every rule needs from the record, indexed once."""

    record: RunRecord
    t: dict[str, Any]
    config: dict[str, Any]
    params: list[str]
    weight_params: list[str]  # fc1.weight .. fcN.weight, input to output
    hidden_layers: list[str]  # fc1 .. fc{N-1}
    step_epoch: dict[int, int]
    # The gradient norms by column; None when grad_norms.csv has no table form (then
    # _steps is built from its rows at once).
    grad_table: GradNormTable | None = None
    first_nonfinite_epoch: int | None = None
    norms_all_finite: bool = True  # every recorded gradient norm is finite
    _steps: dict[int, dict[str, float]] | None = None
    _checkpoints: dict[str, Any] = field(default_factory=dict)
    _profile: list | None = None  # _gradient_profile, computed once

    @classmethod
    def of(cls, record: RunRecord) -> "RunFacts":
        steps: dict[int, dict[str, float]] | None = None
        table = record.grad_norm_table()
        if table is not None:  # by column: no row dicts (a long run has thousands)
            names = table.params
            step_epoch = dict(zip(table.steps, table.epochs))
            norms = [v for row in table.norms for v in row]
        else:
            steps, step_epoch = {}, {}
            for row in record.grad_norms:
                steps.setdefault(row["step"], {})[row["param"]] = row["norm"]
                step_epoch[row["step"]] = row["epoch"]
            steps = dict(sorted(steps.items()))
            names = list(dict.fromkeys(r["param"] for r in record.grad_norms))
            norms = [r["norm"] for r in record.grad_norms]
        params = record.param_names or names
        weights = sorted((p for p in params if p.endswith(".weight")),
                         key=lambda p: layer_number(layer_of(p)))
        facts = cls(
            record=record,
            t=thresholds_of(record),
            config=record.summary.get("config") or record.config or {},
            params=params,
            weight_params=weights,
            hidden_layers=[layer_of(p) for p in weights[:-1]],
            step_epoch=step_epoch,
            grad_table=table,
            _steps=steps,
        )
        # A sum is NaN/Inf iff a term is, or it overflowed: only then look at every norm
        # (one pass over thousands of steps instead of one test per norm and rule).
        facts.norms_all_finite = math.isfinite(sum(norms)) or all(map(math.isfinite, norms))
        facts.first_nonfinite_epoch = facts._first_nonfinite_epoch()
        return facts

    @property
    def steps(self) -> dict[int, dict[str, float]]:
        """step -> param -> gradient norm, in step order (built on first use)."""
        if self._steps is None:
            t = self.grad_table
            self._steps = {s: dict(zip(t.params, row)) for s, row in zip(t.steps, t.norms)}
        return self._steps

    @property
    def metrics(self) -> list[tuple]:
        """metrics.csv rows as tuples: (epoch, train_loss, train_acc, dev_loss, dev_acc)."""
        return self.record.tuples("metrics")

    def _first_nonfinite_epoch(self) -> int | None:
        epochs = [] if self.norms_all_finite else [
            self.step_epoch[s] for s, row in self.steps.items()
            if not all(math.isfinite(v) for v in row.values())]
        losses = [v for m in self.metrics for v in (m[1], m[3])]
        if not math.isfinite(sum(losses)):
            epochs += [m[0] for m in self.metrics
                       if not (math.isfinite(m[1]) and math.isfinite(m[3]))]
        return min(epochs, default=None)

    def trusted(self, epoch: int) -> bool:
        """Snapshots from the epoch of the first non-finite value on show a broken network."""
        return self.first_nonfinite_epoch is None or epoch < self.first_nonfinite_epoch

    @property
    def act(self) -> str:
        return self.config.get("act", {}).get("name", "?")

    @property
    def epochs_run(self) -> int:
        return self.record.summary.get("epochs_run") or len(self.metrics)

    def checkpoint(self, name: str) -> dict | None:
        """checkpoints/<name>.pt as a checked state dict (:meth:`RunRecord.checkpoint`), or
        None when the run has none; RecordError when the file is bad."""
        if not (self.record.run_dir / "checkpoints" / f"{name}.pt").exists():
            return None
        return self.record.checkpoint(name)


def _holding_since(epochs: list[int], holds: Callable[[int], bool]) -> int | None:
    """First epoch of the unbroken run of epochs, ending at the last one, where ``holds``."""
    since = None
    for epoch in reversed(epochs):
        if not holds(epoch):
            break
        since = epoch
    return since


# ---------------------------------------------------------------------------- fixes
def _fix_init(facts: RunFacts) -> str | None:
    """The variance-preserving init that suits the run's activation, as an override;
    None when the run already uses it with its recommended gain (nothing to suggest)."""
    suited = "xavier_normal" if _bounded(facts) else "kaiming_normal"
    init = facts.config.get("init", {})
    if init.get("name") != suited:
        return f"init={suited}"
    if init.get("gain") is not None:
        return ("init.gain=null, gain 1 as Glorot & Bengio" if suited.startswith("xavier")
                else "init.gain=null, the activation's gain")
    return None


def _bounded(facts: RunFacts) -> bool:
    """The run's activation has flat tails (its spec says so): sigmoid, tanh."""
    spec = ACTIVATIONS.get(facts.act)
    return spec is not None and spec.bounded is not None


def _in_parens(advice: str | None) -> str:
    return f" ({advice})" if advice else ""


def _fix_lr(facts: RunFacts, factor: float = 0.1) -> str:
    lr = facts.config.get("optim", {}).get("lr")
    return f"optim.lr={lr * factor:g}" if isinstance(lr, (int, float)) else "a smaller optim.lr"


def _bias(facts: RunFacts) -> float:
    return float(facts.config.get("init", {}).get("bias") or 0.0)


# ---------------------------------------------------------------------------- rules
def non_finite(facts: RunFacts) -> Finding | None:
    """NaN or Inf in a gradient norm, a loss or the last weights: counted, never dropped."""
    bad = [] if facts.norms_all_finite else [
        (s, p, v) for s, row in facts.steps.items() for p, v in row.items() if not math.isfinite(v)]
    finite_losses = math.isfinite(sum(v for m in facts.metrics for v in (m[1], m[3])))
    bad_losses = [] if finite_losses else [
        m for m in facts.record.metrics
        if not (math.isfinite(m["train_loss"]) and math.isfinite(m["dev_loss"]))]
    bad_weights: dict[str, int] = {}
    last = facts.checkpoint("last")
    if last is not None:
        import torch

        for name, tensor in last.items():
            n = int((~torch.isfinite(tensor)).sum())
            if n:
                bad_weights[name] = n
    if not (bad or bad_losses or bad_weights):
        return None

    parts, layers, first_epoch = [], [], None
    status = facts.record.summary.get("status")
    if status == "diverged":
        parts.append(f"training stopped at epoch {facts.epochs_run} (status diverged)")
    if bad:
        first_step = bad[0][0]
        at_first = [(p, v) for s, p, v in bad if s == first_step]
        first_epoch = facts.step_epoch[first_step]
        where = ("every parameter" if len(at_first) == len(facts.params)
                 else _names(p for p, _ in at_first))
        kinds = "/".join(sorted({str(v) for _, v in at_first}))
        n_nan = sum(math.isnan(v) for _, _, v in bad)
        parts.append(
            f"the first non-finite gradient norm ({kinds}) appeared at step {first_step} "
            f"(epoch {first_epoch}) in {where}; {n_nan} NaN and {len(bad) - n_nan} Inf "
            f"of {sum(len(r) for r in facts.steps.values())} recorded gradient norms"
        )
        layers = list(dict.fromkeys(layer_of(p) for p, _ in at_first))
    if bad_losses:
        m = bad_losses[0]
        loss = m["train_loss"] if not math.isfinite(m["train_loss"]) else m["dev_loss"]
        which = "training" if not math.isfinite(m["train_loss"]) else "dev"
        epoch_steps = [s for s, e in facts.step_epoch.items() if e == m["epoch"]]
        after = (f", after step {max(epoch_steps)}" if which == "dev" and epoch_steps else "")
        parts.append(f"the {which} loss was {loss} at epoch {m['epoch']}{after} "
                     f"({len(bad_losses)} epoch{'s' if len(bad_losses) != 1 else ''} "
                     "with a non-finite loss)")
        if first_epoch is None or m["epoch"] < first_epoch:
            # The loss came first: the forward pass overflowed. Where, the activation
            # statistics of that epoch tell: the first layer whose activations are NaN/Inf.
            overflowed = [a["layer"] for a in facts.record.activations
                          if a["epoch"] >= m["epoch"]
                          and not (math.isfinite(a["mean"]) and math.isfinite(a["std"]))]
            origin = overflowed[0] if overflowed else layer_of(facts.weight_params[-1])
            parts.append(f"the first non-finite activations at epoch {m['epoch']} are in "
                         f"{origin}" if overflowed
                         else f"every hidden activation was finite, so it was {origin}'s "
                         "output (the logits)")
            layers = [origin]
            first_epoch = m["epoch"]
    if bad_weights:
        parts.append(f"the last weights hold {sum(bad_weights.values())} NaN/Inf values "
                     f"in {_names(bad_weights)}")
        layers = layers or list(dict.fromkeys(layer_of(p) for p in bad_weights))
        first_epoch = facts.epochs_run if first_epoch is None else first_epoch
    count = len(bad) + len(bad_losses) + sum(bad_weights.values())
    message = "; ".join(parts) + "."
    return Finding("non_finite", layers, first_epoch, float(count), 0.0,
                   message[0].upper() + message[1:],
                   f"Lower the learning rate ({_fix_lr(facts)})"
                   + (f" and check the init scale ({_fix_init(facts)})" if _fix_init(facts) else "")
                   + "; the figures show the steps before it broke.")


def _weight_snapshots(facts: RunFacts) -> list[tuple[int, Callable[[], dict[str, Any]]]]:
    """(epoch, a function giving {param: float64 tensor}) from weights.csv (every log epoch,
    small models), else from checkpoints init.pt (epoch 0) and last.pt (the last epoch).
    A snapshot's tensors are built when asked for: a rule may need the last one only."""
    import torch

    shapes = facts.record.summary.get("param_shapes", {})
    if shapes and facts.record.tuples("weights"):
        flat: dict[int, dict[str, list[float]]] = {}
        for epoch, param, _, value in facts.record.tuples("weights"):
            flat.setdefault(epoch, {}).setdefault(param, []).append(value)

        def state(params: dict[str, list[float]]) -> Callable[[], dict[str, Any]]:
            return lambda: {p: torch.tensor(v, dtype=torch.float64).reshape(shapes[p])
                            for p, v in params.items()}

        return [(epoch, state(params)) for epoch, params in sorted(flat.items())]
    snapshots = []
    for name, epoch in (("init", 0), ("last", facts.epochs_run)):
        checkpoint = facts.checkpoint(name)
        if checkpoint is not None:
            snapshots.append((epoch, lambda c=checkpoint: {k: v.double() for k, v in c.items()}))
    return snapshots


# _duplicate_units compares every pair of distinct units when that is at most this many
# values (time ~0.1 s), else each with at most TWIN_NEIGHBOURS neighbours in the order of a
# random projection (see there), so its time and memory are bounded at any width.
TWIN_ALL_PAIRS_WORK = 1 << 26
TWIN_SPREAD_WORK = 1 << 26  # the same bound for the largest difference among units with a twin
TWIN_NEIGHBOURS = 64
# Layers of at most this many n·n·d values are compared in plain Python floats: a torch op
# costs ~10 us, and a sweep of 10,000 narrow nets diagnoses ~100,000 such layers.
TWIN_PYTHON_WORK = 1 << 11
TWIN_PROJECTION_SEED = 20240607  # fixed: the same record always gets the same answer


def _duplicate_units(state: dict[str, Any], layer: str, next_layer: str, rtol: float):
    """(units with a near-twin, units, largest relative difference between twins).

    A unit is its incoming weights, its bias and its outgoing weights; two units are twins
    when those differ nowhere by more than ``rtol`` times the larger |value| of the pair
    (relative to the pair, not the layer: one huge unit must not make small ones look alike).
    A unit holding a NaN or an infinity has no twin.

    Never the n×n distance matrix: memory O(n·d) for n units of d values, and time
    O(n log n + n·d·K) (width 100 000 takes a fraction of a second):
    1. bit-identical units (a zero or constant init) are collapsed with ``torch.unique``;
       a group of two or more is twins at distance 0;
    2. the m distinct units are compared pair by pair, a block at a time, when m·m·d is at
       most :data:`TWIN_ALL_PAIRS_WORK` (exact);
    3. else they are sorted by a fixed random projection ``p = u·r``. Twins i, j satisfy
       ``|p_i - p_j| <= ||r||_1 * rtol * max(s_i, s_j)`` (s = largest |value| of a unit),
       so each unit is compared only with the following units of that order inside its
       window, and at most K = :data:`TWIN_NEIGHBOURS` of them. What the cap can miss: a
       pair of twins with more than K distinct units between them in projection order,
       i.e. more than K distinct units crowding one window (width ~ d·rtol·s): a large
       ``rtol``, or a big cluster of units that nearly but not quite agree. Random inits
       spread the projections far wider; units that all agree (to well within rtol) are
       each found through their next neighbour. The largest difference is then taken over
       every pair of the units found to have a twin when that is at most
       :data:`TWIN_SPREAD_WORK` values, else over the pairs compared (a lower bound).
    """
    incoming, bias, outgoing = state[f"{layer}.weight"], state[f"{layer}.bias"], state[f"{next_layer}.weight"]
    n_units, d = incoming.shape[0], incoming.shape[1] + 1 + outgoing.shape[0]
    if n_units * n_units * d <= TWIN_PYTHON_WORK:
        return _duplicate_units_small(incoming.tolist(), bias.tolist(), outgoing.T.tolist(), rtol)
    import torch

    bias = bias[:, None]
    units = torch.cat((incoming, bias, outgoing.T), dim=1).double()
    finite = units.isfinite().all(dim=1)
    distinct, counts = torch.unique(units[finite], dim=0, return_counts=True)
    has_twin = counts >= 2  # per distinct row
    m = distinct.shape[0]
    spread = 0.0
    if m >= 2 and m * m * d <= TWIN_ALL_PAIRS_WORK:
        found, spread = _twins_all_pairs(distinct, rtol)
        has_twin |= found
    elif m >= 2:
        order, found, spread = _twins_by_projection(distinct, rtol)
        has_twin[order] |= found
        flagged = distinct[order][found]
        if 2 <= flagged.shape[0] and flagged.shape[0] ** 2 * d <= TWIN_SPREAD_WORK:
            spread = max(spread, _twins_all_pairs(flagged, rtol)[1])
    return int(counts[has_twin].sum()), n_units, spread


def _duplicate_units_small(incoming: list, bias: list, outgoing: list, rtol: float):
    """:func:`_duplicate_units` of a narrow layer, every pair compared in Python floats
    (doubles, as the torch path computes: the same answer, tests/test_scale.py)."""
    units = [w + [b] + o for w, b, o in zip(incoming, bias, outgoing)]
    rows = [u for u in units if all(math.isfinite(x) for x in u)]
    sizes = [max(abs(x) for x in u) for u in rows]
    has_twin = [False] * len(rows)
    spread = 0.0
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            distance = max(abs(a - b) for a, b in zip(rows[i], rows[j]))
            pair_size = max(sizes[i], sizes[j])
            if distance <= rtol * pair_size:
                has_twin[i] = has_twin[j] = True
                spread = max(spread, distance / max(pair_size, _TINY))
    return sum(has_twin), len(units), spread


_TINY = 2.2250738585072014e-308  # torch.finfo(torch.float64).tiny, without importing torch


def _pair_twins(a, size_a, b, size_b, rtol: float):
    """Elementwise over pairs (a[k], b[k]) broadcast: (twins mask, relative difference)."""
    import torch

    distance = (a - b).abs().amax(dim=-1)
    pair_size = torch.maximum(size_a, size_b)
    relative = distance / pair_size.clamp_min(torch.finfo(distance.dtype).tiny)
    return distance <= rtol * pair_size, relative


def _twins_all_pairs(rows, rtol: float):
    """(which rows have a twin among ``rows``, largest relative difference of a twin pair),
    every pair compared, a block of rows at a time (memory O(block·n·d))."""
    import torch

    n, d = rows.shape
    size = rows.abs().amax(dim=1)
    found = torch.zeros(n, dtype=torch.bool)
    spread = 0.0
    block = max(1, (1 << 22) // (n * d))
    for start in range(0, n, block):
        stop = min(start + block, n)
        twins, relative = _pair_twins(rows[start:stop, None, :], size[start:stop, None],
                                      rows[None, :, :], size[None, :], rtol)
        twins[torch.arange(stop - start), torch.arange(start, stop)] = False  # not itself
        found[start:stop] |= twins.any(dim=1)
        if twins.any():
            spread = max(spread, float(relative[twins].max()))
    return found, spread


def _twins_by_projection(rows, rtol: float):
    """(projection order, which rows of that order have a twin found, largest relative
    difference of the pairs found): see :func:`_duplicate_units`, step 3."""
    import torch

    m, d = rows.shape
    r = torch.randn(d, generator=torch.Generator().manual_seed(TWIN_PROJECTION_SEED),
                    dtype=torch.float64)
    order = torch.argsort(rows @ r)
    rows = rows[order]
    proj = rows @ r
    size = rows.abs().amax(dim=1)
    # A twin's size is within rtol of the unit's own: max(s_i, s_j) <= s_i / (1 - rtol).
    bound = size / (1 - rtol) if rtol < 1 else torch.full_like(size, float(size.max()))
    # Slack for the rounding of the projections themselves (d terms, each <= |r_k| s_i).
    window = r.abs().sum() * bound * (rtol + 4 * d * torch.finfo(torch.float64).eps)
    found = torch.zeros(m, dtype=torch.bool)
    active = torch.arange(m)
    spread = 0.0
    for k in range(1, min(TWIN_NEIGHBOURS, m - 1) + 1):
        active = active[active + k < m]
        # Projections are sorted: once the k-th neighbour is out of a unit's window,
        # every later one is too.
        active = active[proj[active + k] - proj[active] <= window[active]]
        if active.numel() == 0:
            break
        other = active + k
        twins, relative = _pair_twins(rows[active], size[active], rows[other], size[other], rtol)
        if twins.any():
            found[active[twins]] = True
            found[other[twins]] = True
            spread = max(spread, float(relative[twins].max()))
    return order, found, spread


def symmetric_weights(facts: RunFacts) -> Finding | None:
    """Hidden units that are exact or near duplicates: the symmetry was never broken."""
    rtol = facts.t["symmetric_rtol"]
    snapshots = [(e, s) for e, s in _weight_snapshots(facts) if facts.trusted(e)]
    if not snapshots or not facts.hidden_layers:
        return None
    layer_names = [layer_of(p) for p in facts.weight_params]
    next_layer = dict(zip(layer_names, layer_names[1:]))
    loaders = dict(snapshots)
    epochs = sorted(loaders)
    states: dict[int, dict[str, Any]] = {}
    # Units compared only where needed: every layer at the last snapshot, then, for the
    # layers flagged there, earlier snapshots back to where the twins first appear.
    per_epoch: dict[tuple[int, str], tuple[int, int, float]] = {}

    def twins(epoch: int, layer: str) -> tuple[int, int, float]:
        if (epoch, layer) not in per_epoch:
            if epoch not in states:
                states[epoch] = loaders[epoch]()
            per_epoch[epoch, layer] = _duplicate_units(states[epoch], layer, next_layer[layer], rtol)
        return per_epoch[epoch, layer]

    last = {layer: twins(epochs[-1], layer) for layer in facts.hidden_layers}
    flagged = [layer for layer in facts.hidden_layers if last[layer][0] >= 2]
    if not flagged:
        return None
    since = min(_holding_since(epochs, lambda e, lay=lay: twins(e, lay)[0] >= 2)
                for lay in flagged)
    clauses = []
    for layer in flagged:
        n, units, spread = last[layer]
        if spread <= FLOAT32_EPS:
            kind = "identical" + (" (up to float32 rounding)" if spread else "")
        else:
            kind = f"near-identical (they differ by ≤{_g(spread)} of their largest weight)"
        clauses.append(f"{n} of {units} units in {layer} are {kind}")
    spread = max(last[lay][2] for lay in flagged)
    whole = [lay for lay in flagged if last[lay][0] == last[lay][1]]
    consequence = (f"{_names(whole)} compute{'s' if len(whole) == 1 else ''} one function "
                   "over and over" if len(whole) == len(flagged)
                   else "the duplicates compute the same function")
    message = (f"{_names(clauses)}: same incoming weights, bias and outgoing weights from "
               f"epoch {since} to the last check (epoch {epochs[-1]}), so {consequence}.")
    message = message[0].upper() + message[1:]
    init = facts.config.get("init", {}).get("name", "?")
    if init in ("zeros", "constant"):
        fix = (f"Break the symmetry with a random init ({_fix_init(facts)} instead of "
               f"init={init}); gradient descent can never make identical units differ.")
    else:
        fix = ("The init was random, so training made these units alike; look at the other "
               f"findings, and try a smaller learning rate ({_fix_lr(facts)}).")
    return Finding("symmetric_weights", flagged, since, spread, rtol, message, fix)


def _unit_table(facts: RunFacts, column: str) -> dict[int, dict[str, list[float]]]:
    """epoch -> layer -> per-unit values of ``column`` from units.csv, trusted epochs only."""
    table: dict[int, dict[str, list[float]]] = {}
    k = COLUMNS["units.csv"].index(column)
    for row in facts.record.tuples("units"):  # (epoch, layer, unit, frac_active, frac_saturated)
        if facts.trusted(row[0]):
            table.setdefault(row[0], {}).setdefault(row[1], []).append(row[k])
    return table


def _flagged_layers(table: dict[int, dict[str, list[float]]], is_bad: Callable[[float], bool],
                    layer_fraction: float):
    """Layers where more than ``layer_fraction`` of the units are bad at the last epoch;
    returns (epochs, {layer: (bad units, units, since epoch)})."""
    epochs = sorted(table)
    if not epochs:
        return epochs, {}

    def bad_share(epoch: int, layer: str) -> float:
        values = table[epoch].get(layer, [])
        return sum(map(is_bad, values)) / len(values) if values else 0.0

    flagged = {}
    for layer, values in table[epochs[-1]].items():
        if bad_share(epochs[-1], layer) > layer_fraction:
            since = _holding_since(epochs, lambda e, lay=layer: bad_share(e, lay) > layer_fraction)
            flagged[layer] = (sum(map(is_bad, values)), len(values), since)
    return epochs, flagged


def _dead_from_layer_stats(facts: RunFacts) -> dict[int, dict[str, list[float]]]:
    """Old records without units.csv: a layer whose activations are all exactly zero has
    every unit dead (partial counts cannot be recovered from layer statistics)."""
    table: dict[int, dict[str, list[float]]] = {}
    for row in facts.record.activations:
        if facts.trusted(row["epoch"]) and row["frac_zero"] == 1.0:
            width = facts.config.get("model", {}).get("width", 1)
            table.setdefault(row["epoch"], {})[row["layer"]] = [0.0] * width
        elif facts.trusted(row["epoch"]):
            table.setdefault(row["epoch"], {})[row["layer"]] = [1.0]
    return table


def _always_zero_gradients(facts: RunFacts) -> list[str]:
    """Parameters whose gradient norm is exactly 0 at every trusted recorded step."""
    rows = [row for s, row in facts.steps.items() if facts.trusted(facts.step_epoch[s])]
    if not rows:
        return []
    return [p for p in facts.params if all(row.get(p) == 0 for row in rows)]


def dead_units(facts: RunFacts) -> Finding | None:
    """Units that are zero on every training example (counted per unit, whole train set)."""
    max_active = facts.t["dead_unit_max_active"]
    table = _unit_table(facts, "frac_active") or _dead_from_layer_stats(facts)
    epochs, flagged = _flagged_layers(table, lambda a: a <= max_active, facts.t["layer_fraction"])
    if not flagged:
        return None
    since = min(s for _, _, s in flagged.values())
    last = epochs[-1]
    whole = [layer for layer, (n, units, _) in flagged.items() if n == units]
    clauses = []
    if whole:
        sizes = sorted({flagged[layer][1] for layer in whole})
        each = f"{sizes[0]} each" if len(sizes) == 1 and len(whole) > 1 else None
        clauses.append(f"all units of {_names(whole)}" + (f" ({each})" if each else
                       f" ({_names(str(flagged[layer][1]) for layer in whole)})"))
    clauses += [f"{n} of {units} units of {layer}"
                for layer, (n, units, _) in flagged.items() if n < units]
    zero_meaning = ("zero on every training example" if max_active == 0
                    else f"non-zero on at most {max_active:.1%} of the training examples")
    when = ("from initialization (epoch 0: born dead)" if since == 0
            else f"from epoch {since} (they died during training)")
    sentence = f"{_names(clauses)} are {zero_meaning} {when} to the last check (epoch {last})"
    fully_dead = [layer for layer, rows in table[last].items()
                  if rows and all(a == 0 for a in rows)]
    if fully_dead:
        sentence += (f"; since {fully_dead[0]} outputs 0 for every input, the network outputs "
                     "the same value for every input")
    zero = _always_zero_gradients(facts)
    if zero:
        others = [p for p in facts.params if p not in zero]
        if others and len(others) <= 2:
            sentence += f", and every gradient is exactly 0 except {_names(others)}'s"
        else:
            sentence += f", and {_names(zero)} get exactly 0 gradient at every recorded step"
    sentence += "."
    worst = max(n / units for n, units, _ in flagged.values())
    fixes = []
    if _bias(facts) < 0:
        fixes.append(f"start the biases at 0 (init.bias=0 instead of {_bias(facts):g})")
    init = facts.config.get("init", {}).get("name", "?")
    if not _bounded(facts) and not init.startswith("kaiming"):
        fixes.append(f"use init=kaiming_normal, whose variance suits ReLU (not init={init})")
    if facts.act == "relu":
        fixes.append("use act=lrelu, whose negative slope keeps a gradient flowing")
    if since > 0:
        fixes.append(f"lower the learning rate ({_fix_lr(facts)}) so one step cannot push "
                     "units off for good")
    if not fixes:
        fixes.append(f"use {_fix_init(facts)} with init.bias=0" if _fix_init(facts)
                     else "use init.bias=0")
    return Finding("dead_units", list(flagged), since, worst, facts.t["layer_fraction"],
                   sentence[0].upper() + sentence[1:], _sentence("; ".join(fixes)))


def saturation(facts: RunFacts) -> Finding | None:
    """Sigmoid/tanh units stuck in their flat tails for most training examples."""
    minimum = facts.t["saturated_unit_min_fraction"]
    table = _unit_table(facts, "frac_saturated")
    table = {e: {lay: v for lay, v in layers.items() if not any(map(math.isnan, v))}
             for e, layers in table.items()}
    epochs, flagged = _flagged_layers(table, lambda s: s >= minimum, facts.t["layer_fraction"])
    if not flagged:
        return None
    since = min(s for _, _, s in flagged.values())
    tail = "|a| > 0.97" if facts.act == "tanh" else "a < 0.015 or a > 0.985"
    clauses = [f"{n} of {units} units of {layer}" for layer, (n, units, _) in flagged.items()]
    message = (
        f"{_names(clauses)} sit in the flat tail of {facts.act} ({tail}) on at least "
        f"{minimum:.0%} of the training examples from epoch {since} to epoch {epochs[-1]}; "
        f"there the activation's slope is below {SATURATED_SLOPE_SHARE:.0%} of its peak, "
        "so little gradient passes through them."
    )
    fixes = [f"smaller initial weights{_in_parens(_fix_init(facts))}"]
    if _bias(facts) != 0:
        fixes.append(f"biases near 0 (init.bias=0 instead of {_bias(facts):g})")
    fixes.append("or act=relu, which has no flat tail for positive inputs")
    worst = max(n / units for n, units, _ in flagged.values())
    return Finding("saturation", list(flagged), since, worst, facts.t["layer_fraction"],
                   message[0].upper() + message[1:], "Use " + ", ".join(fixes) + ".")


def _gradient_profile(facts: RunFacts):
    """Per trusted step with finite weight-gradient norms: (step, first, last, ratio)."""
    if facts._profile is not None:  # the vanishing and the exploding rule both use it
        return facts._profile
    if len(facts.weight_params) < 2:
        return []
    first, last = facts.weight_params[0], facts.weight_params[-1]
    table = facts.grad_table
    if table is not None:
        if first not in table.params or last not in table.params:
            pairs = ()
        else:
            i1, i_n = table.params.index(first), table.params.index(last)
            if facts.norms_all_finite:  # the common case, in one comprehension
                facts._profile = [(s, row[i1], row[i_n], row[i1] / row[i_n])
                                  for s, row in zip(table.steps, table.norms) if row[i_n] != 0]
                return facts._profile
            pairs = ((s, row[i1], row[i_n]) for s, row in zip(table.steps, table.norms))
    else:
        pairs = ((s, row.get(first), row.get(last)) for s, row in facts.steps.items())
    profile = []
    for step, g1, gn in pairs:
        if g1 is None or gn is None or not (math.isfinite(g1) and math.isfinite(gn)) or gn == 0:
            continue  # no ratio: dead units leave the last layer's gradient exactly 0
        profile.append((step, g1, gn, g1 / gn))
    facts._profile = profile
    return profile


def _persistent(hits: list, profile: list) -> bool:
    """A ratio rule describes the network, not one noisy step, when it holds at the first
    recorded step (the init) or at least half of the recorded steps."""
    return bool(hits) and (hits[0][0] == profile[0][0] or 2 * len(hits) >= len(profile))


def _weight_change(facts: RunFacts, param: str) -> float | None:
    """||W_last - W_init|| / ||W_init|| of one parameter, from the checkpoints."""
    init, last = facts.checkpoint("init"), facts.checkpoint("last")
    if init is None or last is None or param not in init:
        return None
    w0, w1 = init[param].double(), last[param].double()
    norm = float(w0.norm())
    return float((w1 - w0).norm()) / norm if norm > 0 else None


def vanishing_gradient(facts: RunFacts) -> Finding | None:
    """AutoTrainer's rule: the first layer's weight gradient is both tiny next to the last
    layer's (ratio) and tiny in itself (norm), at some recorded step."""
    ratio_max, norm_max = facts.t["vanishing_ratio"], facts.t["vanishing_norm"]
    profile = _gradient_profile(facts)
    # An exactly-zero first-layer gradient is blocked (zero outgoing weights, dead units),
    # not shrunk layer by layer; symmetric_weights and dead_units report those. A last
    # layer whose own gradient is below `vanishing_norm` leaves nothing to shrink: the
    # whole net sits at a stationary point (a zero-init net: every norm is rounding noise,
    # fc1 exactly 0 on one CPU and 1e-22 on another), so its ratio means nothing.
    hits = [p for p in profile if 0 < p[3] < ratio_max and p[1] < norm_max <= p[2]]
    if not _persistent(hits, profile):
        return None
    step, g1, gn, ratio = hits[0]
    hops = len(facts.weight_params) - 1
    per_layer = ratio ** (1 / hops)
    first, last = facts.weight_params[0], facts.weight_params[-1]
    row = facts.steps[step]
    small = [layer_of(p) for p in facts.weight_params[:-1] if row[p] < norm_max]
    message = (
        f"At step {step} the weight-gradient norm shrinks by ×{_g(per_layer)} per layer on "
        f"the way back from {layer_of(last)} to {layer_of(first)} ({last} {_g(gn)}, {first} "
        f"{_g(g1)}: ×{_g(ratio)} over {hops} layer{'s' if hops != 1 else ''}); this holds at "
        f"{len(hits)} of {len(profile)} recorded step{'s' if len(profile) != 1 else ''}"
    )
    change = _weight_change(facts, first)
    span = f"{facts.epochs_run} epoch{'s' if facts.epochs_run != 1 else ''}"
    if change == 0:
        message += f", and {layer_of(first)}'s weights did not change at all in {span}"
    elif change is not None:
        message += (f", and {layer_of(first)}'s weights moved by {_g(change)} of their initial "
                    f"size in {span}")
    fixes = []
    if _bounded(facts):
        fixes.append(f"act=relu (the slope of {facts.act} is at most "
                     f"{'0.25' if facts.act == 'sigmoid' else '1'} and shrinks off-centre)")
    init = facts.config.get("init", {})
    if init.get("name") in ("normal", "uniform", "constant", "zeros"):
        fixes.append(f"a variance-preserving init ({_fix_init(facts)})")
    if _bias(facts) != 0:
        fixes.append(f"init.bias=0 (instead of {_bias(facts):g})")
    if not fixes:
        fixes.append("fewer layers (a smaller model.depth)")
    return Finding("vanishing_gradient", small, facts.step_epoch[step], ratio, ratio_max,
                   message + ".", "Try " + ", or ".join(fixes) + ".")


def exploding_gradient(facts: RunFacts) -> Finding | None:
    """Gradient norms growing toward the input (AutoTrainer's ratio) or past an absolute
    bound at some step (from the start, or growing there over time)."""
    ratio_min, norm_max = facts.t["exploding_ratio"], facts.t["exploding_norm"]
    profile = _gradient_profile(facts)
    ratio_hits = [p for p in profile if p[3] > ratio_min]
    ratio_hits = ratio_hits if _persistent(ratio_hits, profile) else []
    table = facts.grad_table
    any_big = (table is None or any(map(norm_max.__lt__, [v for row in table.norms for v in row])))
    big = [(s, p, v) for s, row in facts.steps.items() for p, v in row.items()
           if p.endswith(".weight") and math.isfinite(v) and v > norm_max] if any_big else []
    if not (ratio_hits or big):
        return None
    first_recorded = next(iter(facts.steps))
    crossings = []  # (step, value, threshold, layers, sentence), one per rule that fired
    if big:
        step, param, norm = big[0]
        peak_step, peak_param, peak = max(big, key=lambda b: b[2])
        start_max = max((v for p, v in facts.steps[first_recorded].items()
                         if p.endswith(".weight")), default=0.0)
        growth = (f", up from {_g(start_max)} at step {first_recorded}"
                  if step != first_recorded else "")
        crossings.append((
            step, peak, norm_max, list(dict.fromkeys(layer_of(p) for _, p, _ in big)),
            f"the gradient norm of {param} reached {_g(norm)} at step {step} (above "
            f"{_g(norm_max)}){growth}; the largest was {_g(peak)} ({peak_param}, step {peak_step})",
        ))
    if ratio_hits:
        step, g1, gn, ratio = ratio_hits[0]
        hops = len(facts.weight_params) - 1
        first, last = facts.weight_params[0], facts.weight_params[-1]
        crossings.append((
            step, ratio, ratio_min, [layer_of(first)],
            f"at step {step} the weight-gradient norm grows by ×{_g(ratio ** (1 / hops))} per "
            f"layer on the way back to {layer_of(first)} ({last} {_g(gn)}, {first} {_g(g1)}: "
            f"×{_g(ratio)}), at {len(ratio_hits)} of {len(profile)} recorded "
            f"step{'s' if len(profile) != 1 else ''}",
        ))
    # The rule that fired first gives the value, threshold and layers; both are described.
    first_step, value, threshold, layers, _ = min(crossings, key=lambda c: c[0])
    message = "; ".join(c[4] for c in sorted(crossings, key=lambda c: c[0])) + "."
    grows_over_time = first_step != first_recorded
    fix = (f"Lower the learning rate ({_fix_lr(facts)})" if grows_over_time
           else f"Use a smaller init scale{_in_parens(_fix_init(facts))}")
    return Finding("exploding_gradient", layers, facts.step_epoch[first_step], value, threshold,
                   message[0].upper() + message[1:],
                   fix + "; large gradients make each step overshoot.")


def _chance_accuracy(facts: RunFacts) -> tuple[float, str]:
    """Dev accuracy of always predicting the dev set's majority class (0.5 without data.pt)."""
    path = facts.record.run_dir / "data.pt"
    if path.exists():
        y = facts.record.data()["y_dev"]  # read once per record (a writer may hand it over)
        if y.numel():
            share = float(y.float().mean())
            return max(share, 1 - share), "always predicting the dev set's majority class"
    return 0.5, "guessing between two balanced classes"


def not_learning(facts: RunFacts, earlier: list[Finding]) -> Finding | None:
    """After enough epochs: dev accuracy near chance, or a training loss that did not fall."""
    min_epochs = facts.t["not_learning_min_epochs"]
    # (epoch, train_loss, train_acc, dev_loss, dev_acc) of the trusted epochs
    metrics = [m for m in facts.metrics if facts.trusted(m[0])]
    if facts.epochs_run < min_epochs or len(metrics) < min_epochs:
        return None  # too short to call: a 1-epoch textbook run has not had its chance
    chance, chance_means = _chance_accuracy(facts)
    margin = facts.t["chance_margin"]
    best = max(m[4] for m in metrics)
    first_loss, last_loss = metrics[0][1], metrics[-1][1]
    drop = (first_loss - last_loss) / first_loss if first_loss > 0 else 0.0
    near_chance = best < chance + margin
    flat = drop < facts.t["flat_loss_fraction"]
    if not (near_chance or flat):
        return None
    epochs = metrics[-1][0]
    loss = (f"the training loss went from {_g(first_loss)} (epoch 1) to {_g(last_loss)} "
            f"(epoch {epochs}), " + (f"a {drop:.2%} drop" if drop > 0 else "no drop at all"))
    if near_chance:
        message = (f"After {epochs} epochs the best dev accuracy is {best:.3f}, less than "
                   f"{margin:g} above chance ({chance:.3f}, {chance_means}); {loss}.")
        value, threshold = best, chance + margin
    else:
        message = (f"After {epochs} epochs {loss}, under the {facts.t['flat_loss_fraction']:.0%}"
                   f" that counts as learning (best dev accuracy {best:.3f}).")
        value, threshold = drop, facts.t["flat_loss_fraction"]
    causes = [f.code for f in earlier if f.code != "not_learning"]
    fix = (f"Fix the {_names(causes)} finding{'s' if len(causes) > 1 else ''} first: "
           f"{'they explain' if len(causes) > 1 else 'it explains'} why it cannot learn."
           if causes
           else f"Train longer (trainer.epochs) or raise the learning rate ({_fix_lr(facts, 10)}).")
    return Finding("not_learning", [], epochs, value, threshold, message, fix)


RULES: tuple[Callable[[RunFacts], Finding | None], ...] = (
    non_finite,
    symmetric_weights,
    dead_units,
    saturation,
    vanishing_gradient,
    exploding_gradient,
)


def diagnose(record: RunRecord) -> list[Finding]:
    """Every finding of the run, in :data:`CODES` order; an empty list for a healthy run."""
    facts = RunFacts.of(record)
    findings = [f for rule in RULES if (f := rule(facts)) is not None]
    last = not_learning(facts, findings)
    return findings + ([last] if last else [])


def unchecked_rules(record: RunRecord) -> dict[str, str]:
    """Finding codes the record holds no data for, with why; a rule without data stays
    silent, so "no problems found" must not be claimed for it."""
    missing: dict[str, str] = {}
    table = record.grad_norm_table()
    if not (table.steps if table is not None else record.grad_norms):
        for code in ("vanishing_gradient", "exploding_gradient"):
            missing[code] = "gradient norms not recorded"
    if not record.units and not record.activations:
        for code in ("dead_units", "saturation"):
            missing[code] = "activations not recorded"
    if not record.metrics:
        missing["not_learning"] = "no epoch finished"
    return missing


def diagnosis_table(findings: list[Finding], unchecked: dict[str, str] | None = None):
    """A rich table of the findings, or one row saying no problems were found; the caption
    says which rules had no data to check."""
    from rich.table import Table

    unchecked = unchecked or {}
    checked = [c for c in CODES if c not in unchecked]
    caption = "checked: " + ", ".join(checked)
    if unchecked:
        reasons: dict[str, list[str]] = {}
        for code, why in unchecked.items():
            reasons.setdefault(why, []).append(code)
        caption += "; not checked: " + "; ".join(
            f"{', '.join(codes)} ({why})" for why, codes in reasons.items())
    if not findings:
        verdict = NO_PROBLEMS if not unchecked else f"{NO_PROBLEMS} by the rules that had data"
        table = Table(title="Diagnosis", show_header=False, caption=caption, min_width=72)
        table.add_column("verdict", style="bold green")
        table.add_row(verdict)
        return table
    table = Table(title=f"Diagnosis: {len(findings)} problem{'s' if len(findings) > 1 else ''}",
                  show_lines=True)
    # Wide enough for every code whole; a long layer list wraps between its names.
    table.add_column("finding", style="bold red", min_width=18, max_width=26)
    table.add_column("what the record shows", ratio=3)
    table.add_column("try", ratio=2)
    if unchecked:
        table.caption = caption
    for f in findings:
        where = layer_list(f.layers) if f.layers else "whole network"
        label = (f"{f.code}\n{where}\nsince epoch {f.first_epoch}\n"
                 f"{_g(f.value)} vs {_g(f.threshold)}")
        table.add_row(label, f.message, f.fix)
    return table
