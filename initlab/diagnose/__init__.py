"""Diagnosis: what went wrong in a run, in plain words, with the evidence and a fix, from
its record only (``initlab report DIR`` re-diagnoses any run). :mod:`.facts` (what the record
shows), :mod:`.rules` (one signature per finding, in report order) and :mod:`.words` (message
and fix); this module joins them (:func:`diagnose`) and owns :class:`Finding` (what
summary.json's ``diagnosis`` holds) and the table. Thresholds: the run's ``diagnose`` config.
"""

from dataclasses import asdict, dataclass
from typing import Any

from initlab.diagnose import words
from initlab.diagnose.facts import RunFacts
from initlab.diagnose.rules import CODES, PROBLEM, RULES, SEVERITIES, WARNING, Evidence
from initlab.diagnose.words import layer_list
from initlab.record import FLOAT_FORMAT, RunRecord

__all__ = ["CODES", "NO_PROBLEMS", "PROBLEM", "SEVERITIES", "WARNING", "Finding", "diagnose",
           "diagnosis_table", "layer_list", "unchecked_rules"]

NO_PROBLEMS = "no problems found"


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
    severity: str = PROBLEM  # problem | warning (records before severities: problem)
    first_step: int | None = None  # findings read from the gradient norms: the step

    def as_dict(self) -> dict[str, Any]:
        """As summary.json holds it: the value in the record's number format, so a finding
        made from the run in memory reads the same as one made from its files."""
        out = asdict(self)
        if isinstance(self.value, float):
            out["value"] = float(FLOAT_FORMAT % self.value)
        return out

    @property
    def when(self) -> str:
        """Where it started, in the unit it was seen in: a step, the init, or an epoch."""
        if self.first_step is not None:
            return f"from step {self.first_step}"
        if self.first_epoch == 0:
            return "at init"
        return "" if self.first_epoch is None else f"since epoch {self.first_epoch}"


def diagnose(record: RunRecord) -> list[Finding]:
    """Every finding of the run, in :data:`CODES` order; an empty list for a healthy run."""
    facts = RunFacts.of(record)
    earlier: dict[str, Evidence] = {}
    findings = []
    for rule in RULES:
        ev = rule.signature(facts, earlier)
        if ev is not None:
            message, fix = getattr(words, rule.code)(facts, ev, earlier)
            findings.append(Finding(rule.code, ev.layers, ev.first_epoch, ev.value, ev.threshold,
                                    message, fix, ev.severity, ev.first_step))
            earlier[rule.code] = ev
    return findings


def _has(record: RunRecord) -> dict[str, bool]:
    """Which data the rules read the record holds (cheapest evidence first)."""
    signal = record.summary.get("init_signal")
    ends = (record.summary.get("grad_norms") or {}).get("first")
    if ends:  # the run stored its first recorded step's norms: grad_norms.csv has rows
        grad_norms = True
    else:
        table = record.grad_norm_table()
        grad_norms = bool(table.steps if table is not None else record.grad_norms)
    return {
        "grad_norms": grad_norms,
        "units": bool(record.units or record.activations),
        "metrics": bool(record.summary.get("epochs_run")) or bool(record.metrics),
        "init_signal": isinstance(signal, dict),
        "weights": (record.run_dir / "checkpoints" / "init.pt").exists()
        or (record.run_dir / "checkpoints" / "last.pt").exists()
        or bool(record.summary.get("param_shapes") and record.tuples("weights")),
    }


WHY_MISSING = {
    "grad_norms": "gradient norms not recorded",
    "units": "activations not recorded",
    "metrics": "no epoch finished",
    "init_signal": "no measurement at init (an older record)",
    "weights": "no weights saved",
}


def unchecked_rules(record: RunRecord) -> dict[str, str]:
    """Codes the record holds no data for, with why (no "no problems found" for them)."""
    has = _has(record)
    return {rule.code: WHY_MISSING[rule.needs[0]] for rule in RULES
            if not any(has[need] for need in rule.needs)}


SEVERITY_STYLE = {PROBLEM: "bold red", WARNING: "bold yellow"}


def verdict(findings: list[Finding]) -> str:
    """"2 problems, 1 warning" (most severe first)."""
    counts = [(s, sum(f.severity == s for f in findings)) for s in SEVERITIES]
    return ", ".join(f"{n} {s}{'s' if n > 1 else ''}" for s, n in counts if n)


def diagnosis_table(findings: list[Finding], unchecked: dict[str, str] | None = None):
    """A rich table of the findings, or one row saying no problems were found; the caption
    says which rules had no data to check."""
    from rich.table import Table
    from rich.text import Text

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
        text = NO_PROBLEMS if not unchecked else f"{NO_PROBLEMS} by the rules that had data"
        table = Table(title="Diagnosis", show_header=False, caption=caption, min_width=72)
        table.add_column("verdict", style="bold green")
        table.add_row(text)
        return table
    table = Table(title=f"Diagnosis: {verdict(findings)}", show_lines=True)
    # Wide enough for every code whole; a long layer list wraps between its names.
    table.add_column("finding", min_width=18, max_width=26)
    table.add_column("what the record shows", ratio=3)
    table.add_column("try", ratio=2)
    if unchecked:
        table.caption = caption
    for f in findings:
        where = layer_list(f.layers) if f.layers else "whole network"
        numbers = (f"{words.g(f.value)} vs {words.g(f.threshold)}" if f.threshold is not None
                   else "" if f.value is None else words.g(f.value))
        style = SEVERITY_STYLE.get(f.severity, "bold red")
        label = Text.assemble((f.code, style), "\n", (f.severity, style),
                              f"\n{where}\n{f.when}" + (f"\n{numbers}" if numbers else ""))
        table.add_row(label, f.message, f.fix)
    return table
