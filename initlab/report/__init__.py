"""Reporters: tables and figures rendered from a run record, never from a live model.

``render_run(run_dir)`` is what the end of a run calls; ``render_path(path)`` is what
``initlab report PATH`` calls: a run is re-rendered, a sweep compared, a folder listed.
A run's tables end with its diagnosis (:mod:`initlab.diagnose`), re-derived from the record.
"""

from pathlib import Path

from initlab.record import STATUS_FAILED, STATUS_RUNNING, SUMMARY, RecordError, read_record

FIGURE_FORMATS = ("png", "svg", "pdf")


def render_run(run_dir: Path, console=None, fmt: str = "png", dpi: int = 120) -> list[Path]:
    """Print and save every table of the run, then draw every figure; returns the figures."""
    from rich.console import Console

    from initlab.diagnose import diagnose, diagnosis_table, store_diagnosis, unchecked_rules
    from initlab.report.figures import render_figures
    from initlab.report.tables import print_and_save, run_tables

    record = read_record(Path(run_dir))
    status = record.summary.get("status", "unknown")
    if status in (STATUS_FAILED, STATUS_RUNNING) and not record.metrics:
        why = record.summary.get("error") or "it never finished an epoch"
        raise RecordError(f"{record.run_dir} holds no results: the run {status} ({why})")
    console = console or Console()
    if status in (STATUS_FAILED, STATUS_RUNNING):
        console.print(f"[bold red]status: {status}[/bold red] {record.summary.get('error', '')}")
    # The diagnosis is re-derived from the record, so an old run gets one too; it is
    # printed last and stored in summary.json["diagnosis"].
    findings = diagnose(record)
    store_diagnosis(record, findings)
    tables = {**run_tables(record), "diagnosis": diagnosis_table(findings, unchecked_rules(record))}
    print_and_save(tables, console, record.run_dir / "tables")
    figures = render_figures(record, fmt=fmt, dpi=dpi)
    console.print(f"[bold]Run record:[/bold] {record.run_dir}  ({len(figures)} figures)")
    return figures


def render_path(path: Path, console=None, fmt: str = "png", dpi: int = 120) -> list[Path]:
    """Re-render a run directory, compare a sweep directory, or list a folder of them.

    Returns the files written (none for a listing). Raises RecordError, with one line for
    the user, when ``path`` is none of these.
    """
    from rich.console import Console

    from initlab.report.compare import MULTIRUN_FILE, render_sweep

    path = Path(path)
    if not path.exists():
        raise RecordError(f"{path} does not exist")
    if not path.is_dir():
        raise RecordError(f"{path} is a file; give a run directory, a sweep directory or a "
                          "folder of them")
    console = console or Console()
    if (path / SUMMARY).exists():
        return render_run(path, console=console, fmt=fmt, dpi=dpi)
    if (path / MULTIRUN_FILE).exists():
        return render_sweep(path, console=console, fmt=fmt, dpi=dpi)
    from initlab.report.overview import find_entries, overview_table

    entries = find_entries(path)
    if not entries:
        raise RecordError(f"{path} is not an initlab run, sweep or folder of them "
                          f"(no {SUMMARY} or {MULTIRUN_FILE} in or below it)")
    console.print(overview_table(entries, path))
    console.print("Re-render one with `initlab report PATH`.")
    return []
