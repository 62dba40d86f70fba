"""Reporters: tables, figures, the page and the diagnosis' words, from a run record only.

``render_run`` is the report step (a run's end, with its ``report`` config's sets;
``initlab report``, with every set); :func:`render_path` re-renders a run, compares a
sweep or lists a folder. It writes only ``tables/``, ``figures/`` and ``index.html``."""

import math
from pathlib import Path

from initlab.config import FIGURE_FORMATS
from initlab.record import (
    PAGE,
    STATUS_COMPLETED,
    STATUS_FAILED,
    STATUS_RUNNING,
    STATUS_STOPPED,
    SUMMARY,
    RecordError,
    RunRecord,
    describe_status,
    effective_status,
    open_record,
    read_record,
)

__all__ = ["FIGURE_FORMATS", "render_run", "render_path", "run_findings", "one_line"]

# The tables a run prints by default ("brief"); "full" adds the training log, gradient
# norms, weights and activations. The diagnosis always comes last.
BRIEF_TABLES = ("config", "metrics")

# The comparison figures, in the order they are listed; FIGURE_PARTS splits them in two
# of about equal drawing time (loss_accuracy, 200 seeds: ~0.5 s; the other two ~0.4 s).
# Here, not in compare_figures: the sweep's comparison forks the drawing and reads these
# names without importing matplotlib (~0.7 s) in the process that prints the tables.
COMPARISON_FIGURES = {  # name -> what it shows (the report page's caption)
    "claim": "a paper preset's claim per layer at init: measured over the seeds beside mean-field theory",
    "phase_map": "a sweep over σ_w² × σ_b²: the measured gradient factor per layer on the grid "
                 "(ordered / chaotic) under mean-field theory's edge of chaos",
    "grad_norm_by_layer": "gradient L2 norm per layer at the first step, one line per job or seed group",
    "loss_accuracy": "train and dev loss and accuracy over epochs, per job or seed group",
    "final_accuracy": "final dev and test accuracy of every job",
}
FIGURE_PARTS = (("claim", "phase_map", "loss_accuracy"), ("grad_norm_by_layer", "final_accuracy"))


def run_findings(record: RunRecord):
    """The diagnosis the run stored in summary.json, or for a record without one, derived
    now, in memory (the report never rewrites the record)."""
    from initlab.diagnose import Finding, diagnose

    stored = record.summary.get("diagnosis")
    if isinstance(stored, list):
        try:
            return [Finding(**d) for d in stored]
        except TypeError:
            pass  # written by another version: derive it again
    return diagnose(record)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def one_line(record: RunRecord, findings, label: str = "", width: int = 80) -> str:
    """One line per run: how it ended, test accuracy, findings, where. A sweep's job
    (``label``: "job 3 act=relu") leaves out its folder and a completed run's epochs, and
    shortens its label to fit ``width``."""
    s = record.summary
    status = effective_status(s)
    acc = (s.get("metrics") or {}).get("test", {}).get("acc")
    epochs = _plural(int(s.get("epochs_run") or 0), "epoch")
    parts = [status if label and status == STATUS_COMPLETED else f"{status} after {epochs}"]
    if isinstance(acc, (int, float)) and math.isfinite(acc):
        parts.append(f"test acc {acc:.3f}")
    parts.append(", ".join(f.code for f in findings) if findings else "no findings")
    tail = "; ".join(parts)
    if not label:
        return f"{tail} -> {record.run_dir}"
    room = max(width - len(tail) - 2, 12)
    return f"{label if len(label) <= room else label[:room - 1] + '…'}: {tail}"


# Set by the sweep's callback while a live progress line stands for its jobs (a big sweep
# run job after job in this process): the jobs then print no line of their own.
LIVE_SWEEP_PROGRESS = False


def render_run(run_dir: Path, console=None, fmt: str = "png", dpi: int = 120,
               figures: str = "full", tables: str = "full", job_label: str = "",
               page: bool = True) -> list[Path]:
    """Print and save the run's tables, draw its figures, write its page; returns the figures.
    ``figures``: none | key | full; ``tables``: line | brief | full; ``page``: index.html."""
    from rich.console import Console

    # One line needs the summary (and that metrics.csv holds rows): nothing else is parsed.
    one_line_only = tables == "line" and figures == "none" and not page
    record = (open_record if one_line_only else read_record)(Path(run_dir))
    status = effective_status(record.summary)
    if status in (STATUS_FAILED, STATUS_RUNNING, STATUS_STOPPED) and not record.metrics:
        raise RecordError(f"{record.run_dir} holds no results yet: {describe_status(record.summary)}"
                          + ("" if record.summary.get("error") else "; no epoch finished"))
    _check_writable(record.run_dir, figures != "none", tables != "line", page)
    console = console or Console()
    findings = run_findings(record)
    # Built once for the terminal and the page, which shows every table.
    every_table = unchecked = None
    if tables != "line" or page:
        from initlab.diagnose import unchecked_rules
        from initlab.report.tables import run_tables

        every_table, unchecked = run_tables(record), unchecked_rules(record)
    if tables == "line":
        if not (job_label and LIVE_SWEEP_PROGRESS):
            console.print(one_line(record, findings, job_label, console.width), highlight=False,
                          markup=False, soft_wrap=True)
    else:
        from initlab.diagnose import diagnosis_table
        from initlab.report.tables import print_and_save

        if status != STATUS_COMPLETED:  # say how it ended before the numbers that show it
            style = "cyan" if status == STATUS_RUNNING else "bold red"
            from rich.text import Text

            console.print(Text.assemble(("status: ", style), describe_status(record.summary)),
                          soft_wrap=True)
        shown = dict(every_table)
        if tables == "brief":
            shown = {k: v for k, v in shown.items() if k in BRIEF_TABLES}
        shown["diagnosis"] = diagnosis_table(findings, unchecked)
        print_and_save(shown, console, record.run_dir / "tables")
    written: list[Path] = []
    if figures != "none":
        from initlab.report.figures import render_figures

        written = render_figures(record, which=figures, fmt=fmt, dpi=dpi)
    if tables != "line":
        console.print(f"[bold]Run record:[/bold] {record.run_dir}  "
                      f"({_plural(len(written), 'figure')})", soft_wrap=True)
    if page:
        from initlab.report.page import run_page

        path = run_page(record, findings, unchecked, tables=every_table,
                        sweep_page=_sweep_page_of(record))
        print_page_path(console, path)
    return written


def print_page_path(console, path: Path) -> None:
    """The page's path as a ``file://`` link (a terminal that knows links makes it one)."""
    from rich.text import Text

    url = path.resolve().as_uri()
    console.print(Text.assemble(("Report page: ", "bold"), (url, f"link {url}")), soft_wrap=True)


def _sweep_page_of(record: RunRecord) -> Path | None:
    """The page of the sweep this run is a job of, when there is one to link back to."""
    from initlab.report.compare import MULTIRUN_FILE

    for folder in list(record.run_dir.parents)[:3]:
        if (folder / MULTIRUN_FILE).exists():
            return folder / PAGE
    return None


def _check_writable(folder: Path, figures: bool, tables: bool, page: bool = False) -> None:
    """One line, before anything is drawn, when a file or folder is in the way of
    ``tables/``, ``figures/`` or ``index.html``."""
    for name, used in (("tables", tables), ("figures", figures)):
        target = folder / name
        if used and (target.is_symlink() or target.exists()) and not target.is_dir():
            raise RecordError(f"{target} is a file, not a folder; the report writes its {name} "
                              "there: move or remove it")
    target = folder / PAGE
    if page and target.exists() and not target.is_file():
        raise RecordError(f"{target} is not a file; the report writes the run's page there: "
                          "move or remove it")


def render_path(path: Path, console=None, fmt: str = "png", dpi: int = 120,
                job: int | None = None) -> list[Path]:
    """Re-render a run, compare a sweep, or list a folder of them; returns the files written.
    ``job``: job N of the sweep at ``path`` (made from its group record when it keeps no
    folder, as ``path``/N is). RecordError (one line) when ``path`` is none of these."""
    from rich.console import Console

    from initlab.materialize import job_folder, job_number
    from initlab.report.compare import COMPARED_FILE, MULTIRUN_FILE, render_sweep

    console = console or Console()
    if job is not None:  # a job of a sweep's group record: its folder, made on demand
        path = job_folder(_folder(path), job)
    elif not Path(path).exists() and (grouped := job_number(path)) is not None:
        path = job_folder(*grouped)
    path = _folder(path)
    if (path / SUMMARY).exists():
        return render_run(path, console=console, fmt=fmt, dpi=dpi, figures="full", tables="full")
    if (path / MULTIRUN_FILE).exists() or (path / COMPARED_FILE).exists():
        # A folder `initlab compare` made (no multirun.yaml): compare the same runs again.
        runs = None if (path / MULTIRUN_FILE).exists() else [
            Path(line) for line in (path / COMPARED_FILE).read_text().splitlines() if line]
        _check_writable(path, True, True, True)
        return render_sweep(path, console=console, fmt=fmt, dpi=dpi, runs=runs)
    list_path(path, console)
    return []


def _folder(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise RecordError(f"{path} does not exist")
    if not path.is_dir():
        raise RecordError(f"{path} is a file; give a run directory, a sweep directory or a "
                          "folder of them")
    return path


def list_path(path: Path, console=None, default: bool = False) -> None:
    """``initlab list [PATH]``: a row per run or sweep in or below ``path``, newest first,
    from summaries and Hydra's small files. ``default``: the implied ./outputs, where "no
    runs yet" is news, not an error."""
    from rich.console import Console

    from initlab.report.compare import MULTIRUN_FILE
    from initlab.report.overview import find_entries, overview_table

    path, console = Path(path), console or Console()
    entries = find_entries(_folder(path)) if path.exists() or not default else []
    if not entries:
        if default:
            console.print(f"No runs or sweeps yet under {path}/ (start one with `initlab run`).",
                          highlight=False)
            return
        raise RecordError(f"{path} is not an initlab run, sweep or folder of them "
                          f"(no {SUMMARY} or {MULTIRUN_FILE} in or below it)")
    # soft_wrap: a path longer than the terminal stays one line to copy, never cut.
    console.print(overview_table(entries, path), soft_wrap=True)
    console.print("Re-render one with `initlab report PATH`.")
