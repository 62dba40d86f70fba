"""Reporters: tables and figures rendered from a run record, never from a live model.

``render_run(run_dir)`` is what the end of a run and ``initlab report RUN_DIR`` call; it
ends with the diagnosis table (:mod:`initlab.diagnose`).
"""

from pathlib import Path

from initlab.record import read_record


def render_run(run_dir: Path, console=None, fmt: str = "png", dpi: int = 120) -> list[Path]:
    """Print and save every table of the run, then draw every figure; returns the figures."""
    from rich.console import Console

    from initlab.diagnose import diagnose, diagnosis_table, store_diagnosis
    from initlab.report.figures import render_figures
    from initlab.report.tables import print_and_save, run_tables

    record = read_record(Path(run_dir))
    console = console or Console()
    # The diagnosis is re-derived from the record, so an old run gets one too; it is
    # printed last and stored in summary.json["diagnosis"].
    findings = diagnose(record)
    store_diagnosis(record, findings)
    tables = {**run_tables(record), "diagnosis": diagnosis_table(findings)}
    print_and_save(tables, console, record.run_dir / "tables")
    figures = render_figures(record, fmt=fmt, dpi=dpi)
    console.print(f"[bold]Run record:[/bold] {record.run_dir}  ({len(figures)} figures)")
    return figures
