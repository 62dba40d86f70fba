"""The rules: one signature each over a run's facts (:mod:`initlab.diagnose.facts`),
deciding whether its finding holds and gathering the evidence (layers, start, value,
threshold, severity, data for :mod:`initlab.diagnose.words`). :data:`RULES` is in report
order (broken run, causes, consequences, symptom) and gives the codes; a rule sees the
evidence of those before it, so nothing is reported twice. Severity: ``problem`` where the
run cannot learn as configured, ``warning`` where it still learned (or is too short to tell).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from initlab.diagnose.facts import RunFacts
from initlab.record import layer_of

PROBLEM, WARNING = "problem", "warning"
SEVERITIES = (PROBLEM, WARNING)  # most severe first


@dataclass
class Evidence:
    """What a rule found: the facts its finding states."""

    layers: list[str]
    value: float | None
    threshold: float | None
    severity: str
    first_epoch: int | None = None
    first_step: int | None = None  # for findings read from the gradient norms
    data: dict[str, Any] = field(default_factory=dict)  # for the words


Earlier = dict[str, Evidence]  # code -> evidence of the rules that fired before


@dataclass(frozen=True)
class Rule:
    """A finding's code, its signature, and the record data it needs (any one of them)."""

    code: str
    signature: Callable[[RunFacts, Earlier], Evidence | None]
    needs: tuple[str, ...]  # "grad_norms", "units", "metrics", "init_signal", "weights"


def _unless_learned(facts: RunFacts) -> str:
    """A finding is a problem unless the run went on to learn."""
    return WARNING if facts.learning.learned else PROBLEM


def _problem_if_not_learned(facts: RunFacts) -> str:
    """A warning unless the run is judged and did not learn."""
    return PROBLEM if facts.learning.learned is False else WARNING


# ------------------------------------------------------------------ a broken run
def non_finite(facts: RunFacts, earlier: Earlier) -> Evidence | None:
    """NaN or Inf in a gradient norm, a loss or the last weights: counted, never dropped."""
    bad = [] if facts.norms_all_finite else [
        (s, p, v) for s, row in facts.steps.items() for p, v in row.items() if not math.isfinite(v)]
    finite_losses = math.isfinite(sum(v for m in facts.metrics for v in (m[1], m[3])))
    bad_losses = [] if finite_losses else [
        m for m in facts.record.metrics
        if not (math.isfinite(m["train_loss"]) and math.isfinite(m["dev_loss"]))]
    counts = {name: int((~t.isfinite()).sum()) for name, t in (facts.checkpoint("last") or {}).items()}
    bad_weights = {name: n for name, n in counts.items() if n}
    if not (bad or bad_losses or bad_weights):
        return None
    data: dict[str, Any] = {"diverged": facts.record.summary.get("status") == "diverged",
                            "bad_weights": bad_weights}
    layers, first_epoch, first_step = [], None, None
    if bad:
        first_step = bad[0][0]
        at_first = [(p, v) for s, p, v in bad if s == first_step]
        first_epoch = facts.step_epoch[first_step]
        n_nan = sum(math.isnan(v) for _, _, v in bad)
        data["norms"] = {
            "step": first_step, "epoch": first_epoch,
            "params": [p for p, _ in at_first], "every": len(at_first) == len(facts.params),
            "kinds": sorted({str(v) for _, v in at_first}), "nan": n_nan,
            "inf": len(bad) - n_nan, "of": sum(len(r) for r in facts.steps.values())}
        layers = list(dict.fromkeys(layer_of(p) for p, _ in at_first))
    if bad_losses:
        m = bad_losses[0]
        which = "training" if not math.isfinite(m["train_loss"]) else "dev"
        epoch_steps = [s for s, e in facts.step_epoch.items() if e == m["epoch"]]
        data["loss"] = {"which": which, "epoch": m["epoch"], "epochs": len(bad_losses),
                        "value": m["train_loss"] if which == "training" else m["dev_loss"],
                        "after_step": max(epoch_steps) if which == "dev" and epoch_steps else None}
        if first_epoch is None or m["epoch"] < first_epoch:
            # The loss came first: the forward pass overflowed. Where, the activation
            # statistics of that epoch tell: the first layer whose activations are NaN/Inf.
            overflowed = [a["layer"] for a in facts.record.activations
                          if a["epoch"] >= m["epoch"]
                          and not (math.isfinite(a["mean"]) and math.isfinite(a["std"]))]
            origin = overflowed[0] if overflowed else layer_of(facts.weight_params[-1])
            data["overflow"] = {"layer": origin, "in_activations": bool(overflowed)}
            layers, first_epoch, first_step = [origin], m["epoch"], None
    if bad_weights:
        layers = layers or list(dict.fromkeys(layer_of(p) for p in bad_weights))
        first_epoch = facts.epochs_run if first_epoch is None else first_epoch
    count = len(bad) + len(bad_losses) + sum(bad_weights.values())
    return Evidence(layers, float(count), 0.0, PROBLEM, first_epoch, first_step, data)


# ------------------------------------------------------------------ causes
def born_dead(facts: RunFacts, earlier: Earlier) -> Evidence | None:
    """At init a hidden layer is zero on every training input: the output is constant."""
    layer = facts.born_dead_layer
    if layer is None:
        return None
    at_init = facts.dead_at(0)
    whole = [lay for lay in facts.hidden_layers
             if lay in at_init and at_init[lay] == len(facts.activity[0][lay])]
    last = facts.last_check
    still = last is not None and facts.dead_at(last).get(layer, 0) == len(
        facts.activity[last].get(layer, [None]))
    signal = facts.init_signal or {}
    first_row = facts.steps.get(facts.first_step, {}) if facts.first_step is not None else {}
    data = {"layer": layer, "whole": whole or [layer], "still_dead": still, "last_check": last,
            "output_range": signal.get("output_range"),
            "nonzero_at_init": [p for p in facts.params if first_row.get(p)],
            "always_zero": facts.always_zero_gradients}
    return Evidence(whole or [layer], signal.get("output_range", 0.0), None, PROBLEM, 0, None, data)


def symmetric_weights(facts: RunFacts, earlier: Earlier) -> Evidence | None:
    """Hidden units that are exact or near duplicates: the symmetry was never broken."""
    twins = facts.twins
    if twins is None:
        return None
    spread = max(t[2] for t in twins.layers.values())
    unbreakable = facts.init_name in ("zeros", "constant")
    severity = PROBLEM if unbreakable else _unless_learned(facts)
    return Evidence(list(twins.layers), spread, facts.t["symmetric_rtol"], severity, twins.since,
                    None, {"twins": twins.layers, "last": twins.last, "unbreakable": unbreakable})


def _dead_cause(facts: RunFacts, layer: str, since: int) -> str:
    """Why a layer's units are dead: a negative bias, a training step, a collapse, or else."""
    if since > 0:
        return "training"
    if facts.bias < 0:
        return "bias"
    collapse = facts.collapse
    if collapse is not None and layer != facts.hidden_layers[0]:
        return "collapse"
    return "init"


def dead_units(facts: RunFacts, earlier: Earlier) -> Evidence | None:
    """Units that are zero on every training example (counted per unit, whole train set);
    not those of a born-dead net (born_dead says) or of a collapsed representation at init
    (collapsed_representation says)."""
    if "born_dead" in earlier:
        return None
    causes = {layer: _dead_cause(facts, layer, c.since) for layer, c in facts.dead.items()}
    flagged = {layer: c for layer, c in facts.dead.items() if causes[layer] != "collapse"}
    if not flagged:
        return None
    last = facts.last_check
    whole = [layer for layer, c in flagged.items() if c.bad == c.units]
    fully_dead = [layer for layer, units in facts.activity[last].items()
                  if units and all(a == 0 for a in units)]
    severity = PROBLEM if whole or facts.learning.learned is False else WARNING
    since = min(c.since for c in flagged.values())
    worst = max(c.share for c in flagged.values())
    data = {"flagged": flagged, "whole": whole, "last": last, "fully_dead": fully_dead,
            "always_zero": facts.always_zero_gradients,
            "causes": sorted({causes[layer] for layer in flagged})}
    return Evidence(list(flagged), worst, facts.t["layer_fraction"], severity, since, None, data)


def saturation(facts: RunFacts, earlier: Earlier) -> Evidence | None:
    """Sigmoid/tanh layers with most activations in the flat tails (learned or not)."""
    flagged = facts.saturated
    if not flagged:
        return None
    since = min(c.since for c in flagged.values())
    worst = max(c.activations for c in flagged.values())
    return Evidence(list(flagged), worst, facts.t["layer_fraction"], _problem_if_not_learned(facts),
                    since, None, {"flagged": flagged, "last": facts.last_check,
                                  "learning": facts.learning})


def vanishing_gradient(facts: RunFacts, earlier: Earlier) -> Evidence | None:
    """AutoTrainer's rule: the first layer's weight gradient is both tiny next to the last
    layer's (ratio) and tiny in itself (norm), at the first recorded step or at least half
    of them."""
    ratio_max, norm_max = facts.t["vanishing_ratio"], facts.t["vanishing_norm"]
    profile = facts.gradient_profile
    # An exactly-zero first-layer gradient is blocked (zero outgoing weights, dead units),
    # not shrunk layer by layer; symmetric_weights, born_dead and dead_units report those.
    # A last layer whose own gradient is below `vanishing_norm` leaves nothing to shrink:
    # the whole net sits at a stationary point (a zero-init net: every norm is rounding
    # noise, fc1 exactly 0 on one CPU and 1e-22 on another), so its ratio means nothing.
    # At init the decision is the config's, as the phase's is: the seed's first-layer norm
    # scaled from its own chain of backpropagated norms to mean-field theory's (factor^hops).
    phase, decided, config = facts.phase, profile, None
    if profile and profile[0][0] == 0 and phase is not None and phase.measured \
            and phase.measured > 0 and phase.factor > 0:
        # In logs: a ratio past float range over thousands of layers is inf or 0, no error.
        log_scale = phase.hops * (math.log(phase.factor) - math.log(phase.measured))
        scale = math.exp(min(log_scale, 709.0)) if log_scale > -745 else 0.0
        step, g1, gn, ratio = profile[0]
        decided = [(step, g1 * scale, gn, ratio * scale), *profile[1:]]
        config = ratio * scale
    hits = [p for p, d in zip(profile, decided) if 0 < d[3] < ratio_max and d[1] < norm_max <= d[2]]
    if not facts.persistent(hits):
        return None
    step, g1, gn, ratio = hits[0]
    row = facts.steps[step]
    small = [layer_of(p) for p in facts.weight_params[:-1] if row[p] < norm_max]
    data = {"step": step, "g1": g1, "gn": gn, "ratio": ratio, "hits": len(hits),
            "steps": len(profile), "change": facts.weight_change(facts.weight_params[0]),
            "weight_factor": facts.weight_factor, "phase": facts.phase,
            # LeakyReLU units pushed below 0 by a negative bias pass gradients at its slope
            "leaky_negative": facts.leaky and facts.bias < 0,
            "nonzero_at_step": sum(1 for p in facts.params if row.get(p)),
            "config_ratio": config if step == 0 else None}
    return Evidence(small, ratio, ratio_max, _unless_learned(facts), facts.step_epoch[step],
                    step, data)


def exploding_gradient(facts: RunFacts, earlier: Earlier) -> Evidence | None:
    """Gradient norms growing toward the input (AutoTrainer's ratio) or past a bound."""
    ratio_min, norm_max = facts.t["exploding_ratio"], facts.t["exploding_norm"]
    profile = facts.gradient_profile
    ratio_hits = [p for p in profile if p[3] > ratio_min]
    ratio_hits = ratio_hits if facts.persistent(ratio_hits) else []
    table = facts.grad_table
    any_big = (table is None or any(map(norm_max.__lt__, [v for row in table.norms for v in row])))
    big = [(s, p, v) for s, row in facts.steps.items() for p, v in row.items()
           if p.endswith(".weight") and math.isfinite(v) and v > norm_max] if any_big else []
    if not (ratio_hits or big):
        return None
    first_recorded = facts.first_step
    crossings = []  # (step, value, threshold, layers, kind, numbers), one per rule that fired
    if big:
        step, param, norm = big[0]
        peak_step, peak_param, peak = max(big, key=lambda b: b[2])
        start_max = max((v for p, v in facts.steps[first_recorded].items()
                         if p.endswith(".weight")), default=0.0)
        crossings.append((step, peak, norm_max, list(dict.fromkeys(layer_of(p) for _, p, _ in big)),
                          "norm", {"param": param, "norm": norm, "start_max": start_max,
                                   "peak_step": peak_step, "peak_param": peak_param, "peak": peak}))
    if ratio_hits:
        step, g1, gn, ratio = ratio_hits[0]
        crossings.append((step, ratio, ratio_min, [layer_of(facts.weight_params[0])], "ratio",
                          {"g1": g1, "gn": gn, "ratio": ratio, "hits": len(ratio_hits),
                           "steps": len(profile)}))
    # The rule that fired first gives the value, threshold and layers; both are described.
    crossings.sort(key=lambda c: c[0])
    first_step, value, threshold, layers, _, _ = crossings[0]
    data = {"crossings": [(c[0], c[4], c[5]) for c in crossings], "threshold_norm": norm_max,
            "first_recorded": first_recorded, "grows_over_time": first_step != first_recorded,
            "phase": facts.phase}
    return Evidence(layers, value, threshold, _unless_learned(facts), facts.step_epoch[first_step],
                    first_step, data)


# ------------------------------------------------------------------ consequences at init
def collapsed_representation(facts: RunFacts, earlier: Earlier) -> Evidence | None:
    """Deep hidden layers that map different inputs to nearly parallel vectors at init
    (pair correlation >= collapse_corr), unless a finding that explains it fired: a
    born-dead net, units that are copies of each other, a vanishing signal."""
    collapse = facts.collapse
    if (collapse is None or len(facts.weight_params) < facts.t["deep_min_depth"]
            or {"born_dead", "symmetric_weights", "vanishing_gradient"} & set(earlier)):
        return None
    dead = facts.dead_at(0)
    units = {layer: len(facts.activity.get(0, {}).get(layer, [])) for layer in collapse.layers}
    data = {"collapse": collapse, "dead_at_init": sum(dead.get(layer, 0) for layer in collapse.layers),
            "units": sum(units.values()), "relu_like": not facts.bounded}
    last = collapse.layers[-1]
    return Evidence(collapse.layers, collapse.corr[last], facts.t["collapse_corr"], WARNING, 0,
                    None, data)


def signal_phase(facts: RunFacts, earlier: Earlier) -> Evidence | None:
    """A deep net off the critical line at init: its gradient shrinks (ordered) or grows
    (chaotic) per layer enough to change by more than phase_total_factor over the net.
    The vanishing and exploding findings name the phase themselves."""
    phase = facts.phase
    if (phase is None or phase.phase == "critical"
            or len(facts.weight_params) < facts.t["deep_min_depth"]
            or {"born_dead", "symmetric_weights", "vanishing_gradient",
                "exploding_gradient", "non_finite"} & set(earlier)):
        return None
    total = phase.factor ** phase.hops
    if max(total, 1 / total) < facts.t["phase_total_factor"]:
        return None
    return Evidence(list(facts.hidden_layers), phase.factor,
                    math.exp(-facts.t["phase_log_factor"] if phase.phase == "ordered"
                             else facts.t["phase_log_factor"]),
                    WARNING, 0, None, {"phase": phase, "total": total})


# ------------------------------------------------------------------ the symptom
def not_learning(facts: RunFacts, earlier: Earlier) -> Evidence | None:
    """After enough epochs: dev accuracy near chance, or a training loss that did not fall."""
    learning = facts.learning
    if learning.learned is not False:
        return None
    if learning.near_chance:
        value, threshold = learning.best_dev, learning.chance + facts.t["chance_margin"]
    else:
        value, threshold = learning.drop, facts.t["flat_loss_fraction"]
    return Evidence([], value, threshold, PROBLEM, learning.first_epoch, None,
                    {"learning": learning, "causes": list(earlier)})


RULES: tuple[Rule, ...] = (
    Rule("non_finite", non_finite, ("grad_norms", "metrics", "weights")),
    Rule("born_dead", born_dead, ("init_signal", "units")),
    Rule("symmetric_weights", symmetric_weights, ("weights",)),
    Rule("dead_units", dead_units, ("units",)),
    Rule("saturation", saturation, ("units",)),
    Rule("vanishing_gradient", vanishing_gradient, ("grad_norms",)),
    Rule("exploding_gradient", exploding_gradient, ("grad_norms",)),
    Rule("collapsed_representation", collapsed_representation, ("init_signal",)),
    Rule("signal_phase", signal_phase, ("init_signal", "grad_norms")),
    Rule("not_learning", not_learning, ("metrics",)),
)
CODES = tuple(rule.code for rule in RULES)
