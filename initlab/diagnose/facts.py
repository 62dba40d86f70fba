"""The facts of a run the rules read (:class:`RunFacts`), each read lazily from the record
and cached: ten rules over 10,000 steps cost one pass. Numbers and names only (the words
are :mod:`initlab.diagnose.words`). Facts look only at epochs before the first NaN/Inf
(:meth:`RunFacts.trusted`) and at finite norms; activity and weight facts describe the last
trusted snapshot, "since" where the condition began holding without a break.
"""

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from itertools import takewhile
from statistics import linear_regression
from typing import Any

from initlab.config import DiagnoseConfig
from initlab.diagnose.twins import duplicate_units
from initlab.options import ACTIVATIONS
from initlab.record import COLUMNS, GradNormTable, RunRecord, layer_number, layer_of
from initlab.theory import grad_factor


def thresholds_of(record: RunRecord) -> dict[str, Any]:
    """The run's diagnose config over the schema defaults (old runs have none saved)."""
    saved = (record.summary.get("config") or record.config or {}).get("diagnose") or {}
    return {**asdict(DiagnoseConfig()), **saved}


def holding_since(epochs: list[int], holds: Callable[[int], bool]) -> int | None:
    """First epoch of the unbroken run of epochs, ending at the last one, where ``holds``."""
    return min(takewhile(holds, reversed(epochs)), default=None)


@dataclass
class Learning:
    """Did the run learn? From metrics.csv's trusted epochs, with chance from data.pt."""

    judged: bool  # enough epochs to call (diagnose.not_learning_min_epochs)
    first_epoch: int = 0
    last_epoch: int = 0
    first_loss: float = math.nan
    last_loss: float = math.nan
    drop: float = 0.0  # (first - last) / first training loss
    best_dev: float = math.nan
    chance: float = 0.5
    chance_means: str = ""
    near_chance: bool = False  # best dev accuracy < chance + chance_margin
    flat: bool = False  # the training loss fell by less than flat_loss_fraction
    best_epoch: int = 0  # where the best dev accuracy was
    lowest_loss: float = math.nan  # the lowest training loss on the way
    collapsed: bool = False

    @property
    def learned(self) -> bool | None:
        """True or False once judged; None for a run too short to call."""
        return None if not self.judged else not (self.near_chance or self.flat)


@dataclass
class LayerCount:
    """Units of one layer meeting a condition at the last check, and since when."""

    bad: int
    units: int
    since: int
    activations: float | None = None  # saturation: the share of (unit, example) pairs

    @property
    def share(self) -> float:
        return self.bad / self.units if self.units else 0.0


@dataclass
class Collapse:
    """Hidden layers whose pre-activations of different inputs are nearly parallel at init
    (summary.json ``init_signal.corr``: the mean cosine of pairs of inputs)."""

    layers: list[str]  # the collapsed hidden layers, input to output
    corr: dict[str, float]  # every hidden layer's pair correlation
    first: str  # the first hidden layer (its correlation is the data's, not the net's)


@dataclass
class Phase:
    """How the backpropagated gradient changes per layer at init, and what theory says."""

    factor: float  # per layer toward the input (< 1: shrinks): what the phase is decided on
    hops: int  # layers it was fitted over
    source: str  # "backpropagated signal" (init_signal) or "weight-gradient norms" (step 0)
    phase: str  # ordered | critical | chaotic, from ``factor``
    theory: dict[str, Any] | None  # init_signal.theory: sigma_w2, sigma_b2, chi1, phase ...
    # This seed's own fit, where ``factor`` is the config's (mean-field theory's chain).
    measured: float | None = None


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
    _units: dict[str, dict] = field(default_factory=dict)

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

    # ------------------------------------------------------------------ the record
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

    def checkpoint(self, name: str) -> dict | None:
        """checkpoints/<name>.pt as a checked state dict (:meth:`RunRecord.checkpoint`), or
        None when the run has none; RecordError when the file is bad."""
        if name not in self._checkpoints:
            path = self.record.run_dir / "checkpoints" / f"{name}.pt"
            self._checkpoints[name] = self.record.checkpoint(name) if path.exists() else None
        return self._checkpoints[name]

    # ------------------------------------------------------------------ the configuration
    @property
    def act(self) -> str:
        return self.config.get("act", {}).get("name", "?")

    @property
    def init(self) -> dict[str, Any]:
        return self.config.get("init", {}) or {}

    @property
    def init_name(self) -> str:
        return self.init.get("name", "?")

    @property
    def bias(self) -> float:
        return float(self.init.get("bias") or 0.0)

    @property
    def bounded(self) -> bool:
        """The run's activation has flat tails (its spec says so): sigmoid, tanh."""
        spec = ACTIVATIONS.get(self.act)
        return spec is not None and spec.bounded is not None

    @property
    def leaky(self) -> bool:
        return self.act == "lrelu"

    @property
    def epochs_run(self) -> int:
        return self.record.summary.get("epochs_run") or len(self.metrics)

    @property
    def first_step(self) -> int | None:
        return next(iter(self.step_epoch), None)

    # ------------------------------------------------------------------ learning
    @cached_property
    def learning(self) -> Learning:
        """Dev accuracy against chance and the training loss's drop, over trusted epochs."""
        min_epochs = self.t["not_learning_min_epochs"]
        metrics = [m for m in self.metrics if self.trusted(m[0])]
        if self.epochs_run < min_epochs or len(metrics) < min_epochs:
            return Learning(judged=False)  # a 1-epoch textbook run has not had its chance
        chance, chance_means = self._chance_accuracy()
        first_loss, last_loss = metrics[0][1], metrics[-1][1]
        drop = (first_loss - last_loss) / first_loss if first_loss > 0 else 0.0
        best = max(metrics, key=lambda m: m[4])
        near_chance = best[4] < chance + self.t["chance_margin"]
        flat = drop < self.t["flat_loss_fraction"]
        lowest = min(m[1] for m in metrics)
        fell = first_loss > 0 and (first_loss - lowest) / first_loss >= self.t["flat_loss_fraction"]
        return Learning(True, metrics[0][0], metrics[-1][0], first_loss, last_loss, drop, best[4],
                        chance, chance_means, near_chance, flat, best[0], lowest,
                        flat and not near_chance and fell)

    @cached_property
    def train_labels(self) -> tuple[int, int] | None:
        """(positives, examples) of the training split; None without data.pt."""
        if not (self.record.run_dir / "data.pt").exists():
            return None
        y = self.record.data()["y_train"]
        return int(y.sum()), int(y.numel())

    def _chance_accuracy(self) -> tuple[float, str]:
        """Dev accuracy of always predicting the dev set's majority class (0.5 without data.pt)."""
        if (self.record.run_dir / "data.pt").exists():
            y = self.record.data()["y_dev"]  # read once per record (a writer may hand it over)
            if y.numel():
                share = float(y.float().mean())
                return max(share, 1 - share), "always predicting the dev set's majority class"
        return 0.5, "guessing between two balanced classes"

    # ------------------------------------------------------------------ units
    def unit_table(self, column: str) -> dict[int, dict[str, list[float]]]:
        """epoch -> layer -> per-unit values of ``column`` from units.csv, trusted epochs only."""
        if column not in self._units:
            table: dict[int, dict[str, list[float]]] = {}
            k = COLUMNS["units.csv"].index(column)
            for row in self.record.tuples("units"):  # (epoch, layer, unit, active, saturated)
                if self.trusted(row[0]):
                    table.setdefault(row[0], {}).setdefault(row[1], []).append(row[k])
            self._units[column] = table
        return self._units[column]

    @cached_property
    def activity(self) -> dict[int, dict[str, list[float]]]:
        """epoch -> layer -> each unit's share of examples where it is non-zero (old records:
        from layer statistics, all-zero layers only)."""
        table = self.unit_table("frac_active")
        if table:
            return table
        width = self.config.get("model", {}).get("width", 1)
        for row in self.record.activations:
            if self.trusted(row["epoch"]):
                dead = row["frac_zero"] == 1.0
                table.setdefault(row["epoch"], {})[row["layer"]] = [0.0] * width if dead else [1.0]
        return table

    @cached_property
    def dead(self) -> dict[str, LayerCount]:
        """Layers where more than ``layer_fraction`` of the units are dead (non-zero on at
        most ``dead_unit_max_active`` of the training examples) at the last check."""
        max_active = self.t["dead_unit_max_active"]
        return flagged_layers(self.activity, lambda units: sum(a <= max_active for a in units),
                              self.t["layer_fraction"])

    def dead_at(self, epoch: int) -> dict[str, int]:
        """Dead units per layer at ``epoch`` (every layer the record has there)."""
        max_active = self.t["dead_unit_max_active"]
        return {layer: sum(a <= max_active for a in units)
                for layer, units in self.activity.get(epoch, {}).items()}

    @cached_property
    def saturated(self) -> dict[str, LayerCount]:
        """Sigmoid/tanh layers with more than ``layer_fraction`` of their activations in the
        flat tail at the last check (as SageMaker counts); ``bad``: units saturated on more
        than half of the examples."""
        table = {e: {lay: v for lay, v in layers.items() if not any(map(math.isnan, v))}
                 for e, layers in self.unit_table("frac_saturated").items()}
        return flagged_layers(table, lambda v: sum(x > 0.5 for x in v), self.t["layer_fraction"],
                              share=lambda v: sum(v) / len(v))

    @cached_property
    def last_check(self) -> int | None:
        """The last trusted epoch with unit statistics."""
        return max(self.activity, default=None)

    # ------------------------------------------------------------------ at init
    @property
    def init_signal(self) -> dict[str, Any] | None:
        """summary.json's init_signal (:mod:`initlab.signal`); None for old records."""
        signal = self.record.summary.get("init_signal")
        return signal if isinstance(signal, dict) else None

    @cached_property
    def born_dead_layer(self) -> str | None:
        """The first hidden layer zero on every training input at init (init_signal, else
        units.csv at epoch 0), or None."""
        signal = self.init_signal
        if signal is not None and "dead_layer" in signal:
            return signal["dead_layer"] if signal.get("born_dead") or signal["dead_layer"] else None
        units = self.activity.get(0, {})
        for layer in self.hidden_layers:
            if units.get(layer) and all(a == 0 for a in units[layer]):
                return layer
        return None

    @cached_property
    def collapse(self) -> Collapse | None:
        """The collapsed hidden layers at init; None where fc1 is already collapsed (the data)."""
        signal = self.init_signal
        if signal is None or len(self.hidden_layers) < 2:
            return None
        corr = {layer: c for layer, c in zip(signal.get("layers", []), signal.get("corr", []))
                if layer in self.hidden_layers and c is not None and math.isfinite(c)}
        limit = self.t["collapse_corr"]
        first = self.hidden_layers[0]
        if first not in corr or corr[first] >= limit:
            return None
        layers = [layer for layer in self.hidden_layers[1:] if corr.get(layer, 0.0) >= limit]
        if not layers or layers[-1] != self.hidden_layers[-1]:
            return None  # the last hidden layer, the one the output reads, must be collapsed
        return Collapse(layers, corr, first)

    @cached_property
    def phase(self) -> Phase | None:
        """The gradient's per-layer change at init (init_signal's fit, else the step-0 norms),
        decided on theory's expectation where there is one; None without two positive values."""
        signal = self.init_signal
        hops = len(self.weight_params) - 1
        factor, source = None, ""
        if signal is not None and signal.get("grad_factor"):
            factor, source = float(signal["grad_factor"]), "backpropagated gradient"
        elif self.first_step is not None:
            row = self.steps[self.first_step]
            points = [(k, math.log(row[p])) for k, p in enumerate(self.weight_params)
                      if isinstance(row.get(p), float) and math.isfinite(row[p]) and row[p] > 0]
            if len(points) >= 2:
                slope = linear_regression(*zip(*points)).slope
                factor, source = math.exp(-slope), "weight-gradient norm"
        if factor is None or hops < 1 or not math.isfinite(factor) or factor <= 0:
            return None
        theory = (signal or {}).get("theory")
        theory = theory if isinstance(theory, dict) else None
        expected = grad_factor(theory["grad_sq"]) if theory and theory.get("grad_sq") else None
        measured = None
        if expected is not None and math.isfinite(expected) and expected > 0:
            factor, measured = expected, factor
        log_factor = math.log(factor)
        tolerance = self.t["phase_log_factor"]
        phase = ("critical" if abs(log_factor) < tolerance
                 else "ordered" if log_factor < 0 else "chaotic")
        return Phase(factor, hops, source, phase, theory, measured)

    # ------------------------------------------------------------------ gradients
    @cached_property
    def always_zero_gradients(self) -> list[str]:
        """Parameters whose gradient norm is exactly 0 at every trusted recorded step."""
        rows = [row for s, row in self.steps.items() if self.trusted(self.step_epoch[s])]
        if not rows:
            return []
        return [p for p in self.params if all(row.get(p) == 0 for row in rows)]

    @cached_property
    def gradient_profile(self) -> list[tuple[int, float, float, float]]:
        """Per trusted step with finite weight-gradient norms: (step, first, last, ratio)."""
        if len(self.weight_params) < 2:
            return []
        first, last = self.weight_params[0], self.weight_params[-1]
        table = self.grad_table
        if table is not None:
            if first not in table.params or last not in table.params:
                return []
            i1, i_n = table.params.index(first), table.params.index(last)
            if self.norms_all_finite:  # the common case, in one comprehension
                return [(s, row[i1], row[i_n], row[i1] / row[i_n])
                        for s, row in zip(table.steps, table.norms) if row[i_n] != 0]
            pairs = ((s, row[i1], row[i_n]) for s, row in zip(table.steps, table.norms))
        else:
            pairs = ((s, row.get(first), row.get(last)) for s, row in self.steps.items())
        profile = []
        for step, g1, gn in pairs:
            if g1 is None or gn is None or not (math.isfinite(g1) and math.isfinite(gn)) or gn == 0:
                continue  # no ratio: dead units leave the last layer's gradient exactly 0
            profile.append((step, g1, gn, g1 / gn))
        return profile

    def persistent(self, hits: list) -> bool:
        """A ratio rule describes the network, not one noisy step, when it holds at the
        first recorded step (the init) or at least half of the recorded steps."""
        profile = self.gradient_profile
        return bool(hits) and (hits[0][0] == profile[0][0] or 2 * len(hits) >= len(profile))

    def weight_change(self, param: str) -> float | None:
        """||W_last - W_init|| / ||W_init|| of one parameter, from the checkpoints."""
        init, last = self.checkpoint("init"), self.checkpoint("last")
        if init is None or last is None or param not in init:
            return None
        w0, w1 = init[param].double(), last[param].double()
        norm = float(w0.norm())
        return float((w1 - w0).norm()) / norm if norm > 0 else None

    @cached_property
    def weight_factor(self) -> float | None:
        """What the initial weights alone do to a backpropagated gradient per layer: the
        geometric mean over fc2..fcN of ||W_l||_F / sqrt(units of l) (E||W^T d||^2 =
        ||W||_F^2 / n_out ||d||^2 for d spread over n_out units); None without init.pt."""
        init = self.checkpoint("init")
        if init is None or len(self.weight_params) < 2:
            return None
        logs = []
        for p in self.weight_params[1:]:
            w = init[p].double()
            norm = float(w.norm())
            if norm <= 0 or not math.isfinite(norm):
                return None
            logs.append(math.log(norm / math.sqrt(w.shape[0])))
        return math.exp(sum(logs) / len(logs))

    # ------------------------------------------------------------------ weights
    def weight_snapshots(self) -> list[tuple[int, Callable[[], dict[str, Any]]]]:
        """(epoch, a function giving {param: float64 tensor}) from weights.csv, else from
        init.pt and last.pt; tensors built only when asked for."""
        import torch

        shapes = self.record.summary.get("param_shapes", {})
        if shapes and self.record.tuples("weights"):
            flat: dict[int, dict[str, list[float]]] = {}
            for epoch, param, _, value in self.record.tuples("weights"):
                flat.setdefault(epoch, {}).setdefault(param, []).append(value)

            def state(params: dict[str, list[float]]) -> Callable[[], dict[str, Any]]:
                return lambda: {p: torch.tensor(v, dtype=torch.float64).reshape(shapes[p])
                                for p, v in params.items()}

            return [(epoch, state(params)) for epoch, params in sorted(flat.items())]
        snapshots = []
        for name, epoch in (("init", 0), ("last", self.epochs_run)):
            checkpoint = self.checkpoint(name)
            if checkpoint is not None:
                snapshots.append((epoch, lambda c=checkpoint: {k: v.double() for k, v in c.items()}))
        return snapshots

    @cached_property
    def twins(self) -> "Twins | None":
        """Hidden layers with >= 2 duplicate units at the last trusted snapshot; None
        without weights to compare."""
        snapshots = [(e, s) for e, s in self.weight_snapshots() if self.trusted(e)]
        if not snapshots or not self.hidden_layers:
            return None
        rtol = self.t["symmetric_rtol"]
        layer_names = [layer_of(p) for p in self.weight_params]
        next_layer = dict(zip(layer_names, layer_names[1:]))
        loaders = dict(snapshots)
        epochs = sorted(loaders)
        states: dict[int, dict[str, Any]] = {}
        # Units compared only where needed: every layer at the last snapshot, then, for the
        # layers flagged there, earlier snapshots back to where the twins first appear.
        per_epoch: dict[tuple[int, str], tuple[int, int, float]] = {}

        def count(epoch: int, layer: str) -> tuple[int, int, float]:
            if (epoch, layer) not in per_epoch:
                if epoch not in states:
                    states[epoch] = loaders[epoch]()
                per_epoch[epoch, layer] = duplicate_units(states[epoch], layer,
                                                          next_layer[layer], rtol)
            return per_epoch[epoch, layer]

        last = {layer: count(epochs[-1], layer) for layer in self.hidden_layers}
        flagged = {layer: last[layer] for layer in self.hidden_layers if last[layer][0] >= 2}
        if not flagged:
            return None
        since = min(holding_since(epochs, lambda e, lay=lay: count(e, lay)[0] >= 2)
                    for lay in flagged)
        return Twins(flagged, since, epochs[-1])


@dataclass
class Twins:
    """Duplicate hidden units: per layer (units with a twin, units, largest relative
    difference of a twin pair) at the last snapshot, and since when."""

    layers: dict[str, tuple[int, int, float]]
    since: int
    last: int


def flagged_layers(table: dict[int, dict[str, list[float]]],
                   count_bad: Callable[[list[float]], int], layer_fraction: float,
                   share: Callable[[list[float]], float] | None = None) -> dict[str, LayerCount]:
    """Layers where more than ``layer_fraction`` of the units are bad (or, given, ``share``
    of the values is above it: then kept as ``activations``) at the last epoch, and since
    when that held without a break."""
    epochs = sorted(table)
    if not epochs:
        return {}

    def at(epoch: int, layer: str) -> float:
        values = table[epoch].get(layer, [])
        return (share(values) if share else count_bad(values) / len(values)) if values else 0.0

    flagged = {}
    for layer, values in table[epochs[-1]].items():
        if at(epochs[-1], layer) > layer_fraction:
            since = holding_since(epochs, lambda e, lay=layer: at(e, lay) > layer_fraction)
            flagged[layer] = LayerCount(count_bad(values), len(values), since,
                                        at(epochs[-1], layer) if share else None)
    return flagged
