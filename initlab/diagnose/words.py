"""The words: ``(facts, evidence, earlier) -> (message, fix)`` per finding code (named as
its rule). A message states only what the record shows; a fix is an override to try, never
one that undoes the experiment's point (LeakyReLU in the dead-ReLU run is doing its job).
"""

import math
from collections.abc import Iterable
from typing import Any

from initlab.diagnose.facts import RunFacts
from initlab.diagnose.rules import Earlier, Evidence
from initlab.record import layer_of

# Slope of tanh where |tanh| = 0.97 (the recorders' saturation threshold), relative to its
# peak of 1: 1 - 0.97**2 = 0.059. Sigmoid is a scaled tanh, so the same share holds for it.
SATURATED_SLOPE_SHARE = 1 - 0.97**2
FLOAT32_EPS = 2.0**-23
# A sentence names at most this many items; a 500-layer net gets "a, b, c, … and z
# (219 in all)", so a message stays readable (and its size bounded) at any depth.
MAX_NAMED = 6


# ------------------------------------------------------------------ numbers and lists
def g(x: float | None) -> str:
    """A number in a sentence: 3 significant digits, scientific when tiny or huge."""
    if x is None or not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.3g}"
    return f"{x:.2e}"


def sentence(text: str) -> str:
    """Capitalize the first letter only (str.capitalize would lower-case "ReLU")."""
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


def names(items: Iterable[str]) -> str:
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


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# ------------------------------------------------------------------ fixes
def fix_init(facts: RunFacts) -> str | None:
    """The variance-preserving init that suits the run's activation, as an override;
    None when the run already uses it with its recommended gain (nothing to suggest)."""
    suited = "xavier_normal" if facts.bounded else "kaiming_normal"
    if facts.init_name != suited:
        return f"init={suited}"
    if facts.init.get("gain") is not None:
        return ("init.gain=null, gain 1 as Glorot & Bengio" if suited.startswith("xavier")
                else "init.gain=null, the activation's gain")
    return None


def _in_parens(advice: str | None) -> str:
    return f" ({advice})" if advice else ""


def fix_lr(facts: RunFacts, factor: float = 0.1) -> str:
    lr = facts.config.get("optim", {}).get("lr")
    return f"optim.lr={lr * factor:g}" if isinstance(lr, (int, float)) else "a smaller optim.lr"


def _severity_clause(facts: RunFacts, ev: Evidence) -> str:
    """How much it cost: did the run still learn?"""
    learning = facts.learning
    if learning.learned and ev.severity == "warning":
        return f"; the run still learned (best dev accuracy {learning.best_dev:.3f})"
    return ""


# ------------------------------------------------------------------ theory
def edge_of_chaos(theory: dict[str, Any]):
    """The run's edge of chaos as recorded (:class:`initlab.theory.Critical`); None in a
    record from before it was (the diagnosis never runs the activation's code)."""
    from initlab.theory import Critical

    return Critical(**theory["critical"]) if theory.get("critical") else None


def phase_clause(phase, with_fix: bool = False, brief: bool = False) -> tuple[str, str]:
    """("the ordered phase; theory …; sigma_w^2 ≈ 1.76 is critical for this bias", fix):
    the fix only where the theory has a critical sigma_w^2 (a point or ReLU's line), never
    a number where it has none; ``brief``: the phase and theory's chi_1 only (beside a
    finding that says more)."""
    if phase is None:
        return "", ""
    text = f"the {phase.phase} phase"
    theory, critical = phase.theory, None
    if brief:
        chi = (theory or {}).get("chi1")
        return text + (f" (mean-field χ₁ = {g(chi)})" if chi is not None else ""), ""
    if theory and theory.get("sigma_w2") is not None:
        agrees = "agrees" if theory.get("phase") == phase.phase else f"says {theory.get('phase')}"
        text += (f"; mean-field theory {agrees} (χ₁ = {g(theory.get('chi1'))} at σ_w² = "
                 f"{g(theory['sigma_w2'])}, σ_b² = {g(theory.get('sigma_b2') or 0.0)})")
        critical = edge_of_chaos(theory)
        if critical is not None:
            text += "; " + critical.words
    fix = ""
    if with_fix and critical is not None and critical.sigma_w2 is not None \
            and phase.phase != "critical":
        fix = (f"scale the weights {'up' if phase.phase == 'ordered' else 'down'} to the "
               f"critical σ_w² (init=variance_scaling init.scale={critical.sigma_w2:.3g})")
    return text, fix


# ------------------------------------------------------------------ the findings
def non_finite(facts: RunFacts, ev: Evidence, earlier: Earlier) -> tuple[str, str]:
    d, parts = ev.data, []
    if d["diverged"]:
        parts.append(f"training stopped at epoch {facts.epochs_run} (status diverged)")
    if "norms" in d:
        n = d["norms"]
        where = "every parameter" if n["every"] else names(n["params"])
        parts.append(
            f"the first non-finite gradient norm ({'/'.join(n['kinds'])}) appeared at step "
            f"{n['step']} (epoch {n['epoch']}) in {where}; {n['nan']} NaN and {n['inf']} Inf "
            f"of {n['of']} recorded gradient norms")
    if "loss" in d:
        loss = d["loss"]
        after = f", after step {loss['after_step']}" if loss["after_step"] is not None else ""
        parts.append(f"the {loss['which']} loss was {loss['value']} at epoch {loss['epoch']}"
                     f"{after} ({_plural(loss['epochs'], 'epoch')} with a non-finite loss)")
    if "overflow" in d:
        o, epoch = d["overflow"], d["loss"]["epoch"]
        parts.append(f"the first non-finite activations at epoch {epoch} are in {o['layer']}"
                     if o["in_activations"]
                     else f"every hidden activation was finite, so it was {o['layer']}'s "
                     "output (the logits)")
    if d["bad_weights"]:
        parts.append(f"the last weights hold {sum(d['bad_weights'].values())} NaN/Inf values "
                     f"in {names(d['bad_weights'])}")
    init = fix_init(facts)
    fix = (f"Lower the learning rate ({fix_lr(facts)})"
           + (f" and check the init scale ({init})" if init else "")
           + "; the figures show the steps before it broke.")
    return sentence("; ".join(parts)), fix


def born_dead(facts: RunFacts, ev: Evidence, earlier: Earlier) -> tuple[str, str]:
    d = ev.data
    layer, whole = d["layer"], d["whole"]
    units = len(facts.activity.get(0, {}).get(layer, [])) or "all"
    also = [lay for lay in whole if lay != layer]
    text = (f"at init every unit of {layer} ({units}) is zero on every training input"
            + (f", as are all units of {names(also)}" if also else "")
            + ", so the network outputs the same value for every input"
            + (f" (output range {g(d['output_range'])})" if d["output_range"] is not None else "")
            + ": it is born dead")
    if facts.bias < 0:
        text += f"; the biases of {facts.bias:g} put every pre-activation of {layer} below 0"
    elif facts.init_name == "zeros":
        text += f"; with every weight 0, {layer}'s pre-activations are 0 and {facts.act}(0) = 0"
    others = [p for p in facts.params if p not in d["always_zero"]]
    if d["always_zero"] and others and len(others) <= 2:
        text += (f". No gradient passes a layer that is zero everywhere: every gradient is "
                 f"exactly 0 except {names(others)}'s at every recorded step")
    elif d["always_zero"]:
        text += f". {names(d['always_zero'])} get exactly 0 gradient at every recorded step"
    if d["still_dead"] and d["last_check"]:
        text += f"; {layer} was still zero everywhere at the last check (epoch {d['last_check']})"
    fixes = []
    if facts.act == "relu":
        fixes.append("act=lrelu: its negative slope passes a gradient through every unit "
                     "(the textbook's fix for dead ReLUs)")
    if facts.bias < 0:
        fixes.append(f"biases at 0 (init.bias=0 instead of {facts.bias:g})")
    if facts.init_name in ("zeros", "constant"):
        fixes.append(f"a random init ({fix_init(facts) or 'init=normal'})")
    if not fixes:
        fixes.append("fewer layers (a smaller model.depth; deep narrow ReLU nets are born "
                     "dead more often, Lu et al. 2019) or another seed")
    return sentence(text), "Use " + ", or ".join(fixes) + "."


def symmetric_weights(facts: RunFacts, ev: Evidence, earlier: Earlier) -> tuple[str, str]:
    twins, clauses = ev.data["twins"], []
    for layer, (n, units, spread) in twins.items():
        if spread <= FLOAT32_EPS:
            kind = "identical" + (" (up to float32 rounding)" if spread else "")
        else:
            kind = f"near-identical (they differ by ≤{g(spread)} of their largest weight)"
        clauses.append(f"{n} of {units} units in {layer} are {kind}")
    whole = [lay for lay, (n, units, _) in twins.items() if n == units]
    consequence = (f"{names(whole)} compute{'s' if len(whole) == 1 else ''} one function "
                   "over and over" if len(whole) == len(twins)
                   else "the duplicates compute the same function")
    message = (f"{names(clauses)}: same incoming weights, bias and outgoing weights from "
               f"epoch {ev.first_epoch} to the last check (epoch {ev.data['last']}), so "
               f"{consequence}")
    if ev.data["unbreakable"] and len(whole) == len(twins):
        message += "; " + _one_unit_net(facts)
    if ev.data["unbreakable"]:
        fix = (f"Break the symmetry with a random init ({fix_init(facts) or 'init=normal'} "
               f"instead of init={facts.init_name}); gradient descent can never make identical "
               "units differ.")
    else:
        fix = ("The init was random, so training made these units alike; look at the other "
               f"findings, and try a smaller learning rate ({fix_lr(facts)}).")
    return sentence(message + _severity_clause(facts, ev)), fix


def _one_unit_net(facts: RunFacts) -> str:
    """What a net whose hidden units are all identical can do: what one unit can. The
    textbook's 50% and loss log 2 hold only where the training labels are exactly balanced:
    then a zero init has a zero gradient everywhere (the output 1/2 is already the best
    constant); otherwise the output bias moves, the identical units move together, and the
    net learns what a one-unit net can."""
    labels = facts.train_labels
    if labels is None:
        return "it learns at most what a net of one unit per layer can"
    positives, n = labels
    if 2 * positives == n and facts.init_name == "zeros":
        return (f"the training labels are exactly balanced ({positives} of {n}), so at a zero "
                "init every gradient is 0 too: the output stays 1/2, the loss log 2 = 0.693 and "
                "the accuracy chance (the textbook's result, which holds for balanced data only)")
    return (f"the training labels are not exactly balanced ({positives} of {n}), so the units move, "
            "but together: the net learns only what a net of one unit per layer can")


CAUSE_WORDS = {
    "bias": "killed by the negative bias from initialization (epoch 0)",
    "init": "dead from initialization (epoch 0)",
    "training": "alive at init; they died during training",
}


def dead_units(facts: RunFacts, ev: Evidence, earlier: Earlier) -> tuple[str, str]:
    d = ev.data
    flagged, max_active = d["flagged"], facts.t["dead_unit_max_active"]
    clauses = []
    if d["whole"]:
        sizes = sorted({flagged[layer].units for layer in d["whole"]})
        each = f"{sizes[0]} each" if len(sizes) == 1 and len(d["whole"]) > 1 else None
        clauses.append(f"all units of {names(d['whole'])}" + (f" ({each})" if each else
                       f" ({names(str(flagged[layer].units) for layer in d['whole'])})"))
    clauses += [f"{c.bad} of {c.units} units of {layer}" for layer, c in flagged.items()
                if c.bad < c.units]
    zero_meaning = ("zero on every training example" if max_active == 0
                    else f"non-zero on at most {max_active:.1%} of the training examples")
    since = ev.first_epoch
    when = (f"from epoch {since}" if since > 0 else "from initialization (epoch 0)")
    text = f"{names(clauses)} are {zero_meaning} {when} to the last check (epoch {d['last']})"
    text += " (" + "; ".join(CAUSE_WORDS[c] for c in d["causes"]) + ")"
    if d["fully_dead"]:
        text += (f"; since {d['fully_dead'][0]} outputs 0 for every input, the network outputs "
                 "the same value for every input")
    zero = d["always_zero"]
    if zero:
        others = [p for p in facts.params if p not in zero]
        if others and len(others) <= 2:
            text += f", and every gradient is exactly 0 except {names(others)}'s"
        else:
            text += f", and {names(zero)} get exactly 0 gradient at every recorded step"
    fixes = []
    if "bias" in d["causes"]:
        fixes.append(f"start the biases at 0 (init.bias=0 instead of {facts.bias:g})")
    if not facts.bounded and not facts.init_name.startswith("kaiming") and "training" not in d["causes"]:
        fixes.append(f"use init=kaiming_normal, whose variance suits ReLU (not init={facts.init_name})")
    if facts.act == "relu":
        fixes.append("use act=lrelu, whose negative slope keeps a gradient flowing")
    if "training" in d["causes"]:
        fixes.append(f"lower the learning rate ({fix_lr(facts)}) so one step cannot push "
                     "units off for good")
    if not fixes:
        fixes.append(f"use {fix_init(facts)} with init.bias=0" if fix_init(facts)
                     else "use init.bias=0")
    return sentence(text + _severity_clause(facts, ev)), sentence("; ".join(fixes))


def saturation(facts: RunFacts, ev: Evidence, earlier: Earlier) -> tuple[str, str]:
    d = ev.data
    tail = "|a| > 0.97" if facts.act == "tanh" else "a < 0.015 or a > 0.985"
    shares = [f"{c.activations:.0%} of {layer}'s" for layer, c in d["flagged"].items()]
    most = sum(c.bad for c in d["flagged"].values())
    units = sum(c.units for c in d["flagged"].values())
    text = (f"{names(shares)} activations sit in the flat tail of {facts.act} ({tail}) from "
            f"epoch {ev.first_epoch} to epoch {d['last']} ({most} of {units} units there are "
            f"saturated on most training examples); there the activation's slope is below "
            f"{SATURATED_SLOPE_SHARE:.0%} of its peak, so little gradient passes through them")
    learning = d["learning"]
    if learning.learned:
        text += (f". The run still learned (best dev accuracy {learning.best_dev:.3f}): a "
                 "warning, the saturated units learn slowly and carry little information")
    fixes = [f"smaller initial weights{_in_parens(fix_init(facts))}"]
    if facts.bias != 0:
        fixes.append(f"biases near 0 (init.bias=0 instead of {facts.bias:g})")
    fixes.append("or act=relu, which has no flat tail for positive inputs")
    return sentence(text), "Use " + ", ".join(fixes) + "."


def vanishing_gradient(facts: RunFacts, ev: Evidence, earlier: Earlier) -> tuple[str, str]:
    d = ev.data
    hops = len(facts.weight_params) - 1
    per_layer = d["ratio"] ** (1 / hops)
    first, last = facts.weight_params[0], facts.weight_params[-1]
    text = (
        f"at step {d['step']} the weight-gradient norm shrinks by ×{g(per_layer)} per layer on "
        f"the way back from {layer_of(last)} to {layer_of(first)} ({last} {g(d['gn'])}, {first} "
        f"{g(d['g1'])}: ×{g(d['ratio'])} over {_plural(hops, 'layer')}); this holds at "
        f"{d['hits']} of {d['steps']} recorded step{'s' if d['steps'] != 1 else ''}")
    change = d["change"]
    span = _plural(facts.epochs_run, "epoch")
    if change == 0:
        text += f", and {layer_of(first)}'s weights did not change at all in {span}"
    elif change is not None:
        text += (f", and {layer_of(first)}'s weights moved by {g(change)} of their initial "
                 f"size in {span}")
    fixes = []
    if facts.bounded:
        peak = "0.25" if facts.act == "sigmoid" else "1"
        text += f". The slope of {facts.act} is at most {peak} and shrinks off-centre"
        fixes.append(f"act=relu (its slope is 1 wherever a unit is active, not at most {peak})")
    elif d["leaky_negative"]:
        text += (f". LeakyReLU keeps every gradient non-zero ({d['nonzero_at_step']} of "
                 f"{len(facts.params)} parameters get one at step {d['step']}), which is the "
                 f"textbook's fix for dead ReLUs; with biases of {facts.bias:g} every unit sits "
                 "on its negative side, where the slope is "
                 f"{facts.config.get('act', {}).get('negative_slope', 0.01):g}, so the gradient "
                 "is back but small")
    else:
        text += (f". {facts.act} passes a gradient at slope 1 wherever a unit is active, which "
                 "relieves the vanishing (sigmoid's slope is at most 0.25)")
        if d["weight_factor"] is not None:
            text += (f"; what shrinks it here is the weights' scale: the initial weights alone "
                     f"scale a gradient by ×{g(d['weight_factor'])} per layer")
    words, _ = phase_clause(d["phase"], brief=True)
    if words and d["phase"].phase != "critical":
        text += f"; at init this is {words}"
    if d.get("config_ratio") is not None:
        text += (f" (decided on the config's ×{g(d['config_ratio'])}: this seed's chain scaled to "
                 "mean-field theory's, so every seed of it decides alike)")
    if d["leaky_negative"]:
        slope = facts.config.get("act", {}).get("negative_slope", 0.01)
        return sentence(text), (
            "Keep act=lrelu: it is what lets these gradients through. A larger negative slope "
            f"passes more of them (act.negative_slope={min(10 * slope, 0.3):g}).")
    if facts.init_name in ("normal", "uniform", "constant", "zeros"):
        fixes.append(f"a variance-preserving init ({fix_init(facts)})")
    if facts.bias != 0 and facts.bounded:
        fixes.append(f"init.bias=0 (instead of {facts.bias:g}: off-centre the slope is smaller)")
    if facts.bias < 0 and not facts.bounded and not d["leaky_negative"]:
        fixes.append(f"init.bias=0 (instead of {facts.bias:g})")
    if not fixes:
        fixes.append("fewer layers (a smaller model.depth)")
    return sentence(text), sentence("Try " + ", or ".join(fixes))


def exploding_gradient(facts: RunFacts, ev: Evidence, earlier: Earlier) -> tuple[str, str]:
    d = ev.data
    parts = []
    hops = len(facts.weight_params) - 1
    first, last = facts.weight_params[0], facts.weight_params[-1]
    for step, kind, n in d["crossings"]:
        if kind == "norm":
            growth = (f", up from {g(n['start_max'])} at step {d['first_recorded']}"
                      if step != d["first_recorded"] else "")
            parts.append(
                f"the gradient norm of {n['param']} reached {g(n['norm'])} at step {step} (above "
                f"{g(d['threshold_norm'])}){growth}; the largest was {g(n['peak'])} "
                f"({n['peak_param']}, step {n['peak_step']})")
        else:
            parts.append(
                f"at step {step} the weight-gradient norm grows by ×{g(n['ratio'] ** (1 / hops))} "
                f"per layer on the way back to {layer_of(first)} ({last} {g(n['gn'])}, {first} "
                f"{g(n['g1'])}: ×{g(n['ratio'])}), at {n['hits']} of {n['steps']} recorded "
                f"step{'s' if n['steps'] != 1 else ''}")
    text = "; ".join(parts)
    words, _ = phase_clause(d["phase"], brief=True)
    if not d["grows_over_time"] and words and d["phase"].phase == "chaotic":
        text += f"; at init this is {words}"
    fix = (f"Lower the learning rate ({fix_lr(facts)})" if d["grows_over_time"]
           else f"Use a smaller init scale{_in_parens(fix_init(facts))}")
    return sentence(text + _severity_clause(facts, ev)), fix + "; large gradients make each step overshoot."


def collapsed_representation(facts: RunFacts, ev: Evidence, earlier: Earlier) -> tuple[str, str]:
    d = ev.data
    c = d["collapse"]
    last = c.layers[-1]
    text = (f"at init {layer_list(c.layers) if len(c.layers) > 2 else names(c.layers)} map "
            "different inputs to nearly parallel vectors: the correlation of the pre-activations "
            f"of pairs of training inputs rises from {c.corr[c.first]:.2f} at {c.first} to "
            f"{c.corr[last]:.3f} at {last} (≥ {facts.t['collapse_corr']:g} from {c.layers[0]} on), "
            "so the last hidden layer hands the output nearly the same direction for every input")
    if d["relu_like"] and d["dead_at_init"]:
        text += (f". In such a layer a unit that is negative for one input is negative for "
                 f"nearly all: {d['dead_at_init']} of {d['units']} units of these layers "
                 f"({d['dead_at_init'] / max(d['units'], 1):.0%}) are zero on every training "
                 "input at init. That is the depth's doing, not units killed by a bias or a "
                 "large step, and they can come back as the layers below them learn")
    fix = ("Deep plain MLPs do this with any init: fewer layers (a smaller model.depth) keep "
           "different inputs apart; if the run learns, nothing needs fixing.")
    return sentence(text + _severity_clause(facts, ev)), fix


def signal_phase(facts: RunFacts, ev: Evidence, earlier: Earlier) -> tuple[str, str]:
    phase, total = ev.data["phase"], ev.data["total"]
    way = "shrinks" if phase.phase == "ordered" else "grows"
    words, fix = phase_clause(phase, with_fix=True)
    seed = ("" if phase.measured is None else
            f", as mean-field theory expects for this setting (this seed: ×{g(phase.measured)})")
    text = (f"at init the {phase.source} {way} ×{g(phase.factor)} per layer toward the input "
            f"(×{g(total)} over {_plural(phase.hops, 'layer')}){seed}: {words}")
    edge = edge_of_chaos(phase.theory) if phase.theory else None
    if not fix and edge is not None and edge.kind == "none":
        # No scale is critical (GELU, SiLU without a bias spread): a larger one does not
        # reach the edge, it crosses into unbounded growth.
        grows = (f": above σ_w² ≈ {edge.grows_above:.3g} a unit-variance signal grows without "
                 "bound" if edge.grows_above is not None else "")
        fix = (f"no init scale alone reaches the edge of chaos for this activation and bias"
               f"{grows}; use fewer layers")
    elif not fix:
        fix = (f"a {'larger' if phase.phase == 'ordered' else 'smaller'} init scale"
               + _in_parens(fix_init(facts)))
    return sentence(text + _severity_clause(facts, ev)), sentence(
        f"To train deeper, {fix}; the {phase.phase} phase limits the depth that trains well")


def not_learning(facts: RunFacts, ev: Evidence, earlier: Earlier) -> tuple[str, str]:
    learning = ev.data["learning"]
    epochs = learning.last_epoch
    drop = learning.drop
    loss = (f"the training loss went from {g(learning.first_loss)} (epoch {learning.first_epoch}) "
            f"to {g(learning.last_loss)} (epoch {epochs}), "
            + (f"a {drop:.2%} drop" if drop > 0 else "no drop at all"))
    if learning.collapsed:
        message = (f"It learned, then collapsed: the best dev accuracy {learning.best_dev:.3f} came "
                   f"at epoch {learning.best_epoch} and the training loss fell to "
                   f"{g(learning.lowest_loss)}, but by epoch {epochs} it was back at "
                   f"{g(learning.last_loss)} (from {g(learning.first_loss)} at epoch "
                   f"{learning.first_epoch}).")
        return message, (f"Lower the learning rate ({fix_lr(facts)}) so training stays where it "
                         f"got to, or keep the best epoch's weights (checkpoints/best.pt).")
    if learning.near_chance:
        margin = facts.t["chance_margin"]
        message = (f"After {epochs} epochs the best dev accuracy is {learning.best_dev:.3f}, less "
                   f"than {margin:g} above chance ({learning.chance:.3f}, {learning.chance_means})"
                   f"; {loss}.")
    else:
        message = (f"After {epochs} epochs {loss}, under the {facts.t['flat_loss_fraction']:.0%}"
                   f" that counts as learning (best dev accuracy {learning.best_dev:.3f}).")
    causes = ev.data["causes"]
    fix = (f"Fix the {names(causes)} finding{'s' if len(causes) > 1 else ''} first: "
           f"{'they explain' if len(causes) > 1 else 'it explains'} why it cannot learn."
           if causes
           else f"Train longer (trainer.epochs) or raise the learning rate ({fix_lr(facts, 10)}).")
    return message, fix
