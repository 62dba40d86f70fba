"""The browsable report: a self-contained ``index.html`` per run, sweep and comparison,
from the record alone. It works from the file system: figures and files linked
relatively, style and the sorting script inline, nothing from a network. Jinja2 templates
(``templates/``) escape every value (overrides and paths are the user's text); the tables
are the terminal's own rich tables, read cell by cell."""

import math
import os
from collections import Counter, namedtuple
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from markupsafe import escape

from initlab.group_record import GROUPS_DIR
from initlab.record import PAGE, RunRecord, describe_status, effective_status

FIGURE_SUFFIXES = (".png", ".svg")  # what an <img> shows; a PDF figure is linked instead
# The run tables shown open, in this order; the others follow, folded.
OPEN_TABLES = ("metrics", "config", "grad_norms", "activations")


@dataclass
class TableData:
    """A table as the page shows it: plain-text cells, which columns hold numbers."""

    name: str
    title: str
    headers: list[str]
    rows: list[list[str]]
    numeric: list[bool]
    caption: str = ""
    row_classes: list[str] = field(default_factory=list)
    cell_html: dict[tuple[int, int], str] = field(default_factory=dict)  # (row, col) -> safe html


FigureLink = namedtuple("FigureLink", "href name about image")
FileLink = namedtuple("FileLink", "href path size")


def _plain(cell: Any) -> str:
    """A rich cell as the terminal shows its text: markup strings and Text objects lose
    their styles, Folded cells their break points."""
    from rich.errors import MarkupError
    from rich.text import Text

    if cell is None:
        return ""
    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        if "[" not in cell and ":" not in cell:  # no markup tag, no :emoji: code
            return cell
        try:
            return Text.from_markup(cell).plain
        except MarkupError:
            return cell
    return str(getattr(cell, "text", cell))


def table_data(name: str, table: Any) -> TableData:
    """The cells of a rich ``Table`` (or a :class:`~initlab.report.tables.Fitted` one)."""
    table = getattr(table, "table", table)
    columns = table.columns
    cells = [[_plain(c) for c in column.cells] for column in columns]
    rows = [list(r) for r in zip(*cells)] if cells else []
    return TableData(
        name=name, title=_plain(table.title), caption=_plain(table.caption),
        headers=[_plain(c.header).replace("\n", " ") for c in columns], rows=rows,
        numeric=[c.justify == "right" for c in columns])


def href(path: Path, base: Path) -> str:
    """``path`` relative to the page's folder ``base``, as a URL."""
    return quote(Path(os.path.relpath(path, base)).as_posix())


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB"):
        if n < 1000:
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def file_links(folder: Path, skip: tuple[str, ...] = (PAGE,), skip_dirs: set[str] = frozenset(),
               limit: int = 400) -> tuple[list[FileLink], int]:
    """Every file under ``folder`` (not the page, not ``skip_dirs``), linked relatively; at
    most ``limit``, and how many were left out. Strings, not Paths: a sweep lists the files
    of a hundred jobs."""
    links: list[FileLink] = []
    left = 0
    for root, dirs, files in os.walk(folder, followlinks=True):
        rel = os.path.relpath(root, folder)
        prefix = "" if rel == "." else Path(rel).as_posix() + "/"
        dirs[:] = sorted(d for d in dirs if prefix or d not in skip_dirs)
        for name in sorted(files):
            if not prefix and name in skip:
                continue
            if len(links) >= limit:
                left += 1
                continue
            try:
                size = os.stat(os.path.join(root, name)).st_size
            except OSError:
                continue
            links.append(FileLink(quote(prefix + name), prefix + name, _size(size)))
    return links, left


def figure_links(figures_dir: Path, base: Path, specs: dict[str, str] | None = None) -> list[FigureLink]:
    """The figures in ``figures_dir``, each once (the newest of its formats): those of
    ``specs`` (name -> about) first, in order, then the others by name."""
    if not figures_dir.is_dir():
        return []
    specs = specs or {}
    newest: dict[str, Path] = {}
    for p in sorted((p for p in figures_dir.iterdir() if p.is_file()),
                    key=lambda p: (p.stat().st_mtime, p.suffix.lower() in FIGURE_SUFFIXES)):
        newest[p.stem] = p
    found = list(newest.values())
    order = {name: k for k, name in enumerate(specs)}
    found.sort(key=lambda p: (order.get(p.stem, len(order)), p.name))
    return [FigureLink(href(p, base), p.stem.replace("_", " "), specs.get(p.stem, ""),
                       p.suffix.lower() in FIGURE_SUFFIXES) for p in found]


@cache
def _environment():
    """Loaded once per process: the templates compile on first use and are kept."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    return Environment(loader=PackageLoader("initlab.report", "templates"),
                       autoescape=select_autoescape(["html", "j2"]), undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True)


def render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(**context)


def write_page(folder: Path, html: str) -> Path:
    """Write ``folder/index.html`` atomically: a browser never reads half a page."""
    path = folder / PAGE
    tmp = path.with_name(f".{PAGE}.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _number(value: Any) -> str:
    from initlab.report.tables import fmt

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return fmt(float(value)) if isinstance(value, float) or not math.isfinite(value) else str(value)
    return "–" if value is None else str(value)


def finding_view(f: Any) -> dict[str, Any]:
    from initlab.diagnose import layer_list

    return {"code": f.code, "severity": f.severity, "when": f.when,
            "layers": layer_list(f.layers) if f.layers else "the network",
            "value": _number(f.value), "threshold": _number(f.threshold),
            "message": f.message, "fix": f.fix}


def run_page(record: RunRecord, findings: list, unchecked: dict[str, str] | None = None,
             tables: dict[str, Any] | None = None, sweep_page: Path | None = None,
             lean: bool = False) -> Path:
    """Write the run's page: diagnosis first, then figures, tables and every file."""
    from initlab.diagnose import CODES, verdict
    from initlab.report.tables import run_tables

    run_dir = record.run_dir
    s = record.summary
    status = effective_status(s)
    shown = tables if tables is not None else run_tables(record)
    ordered = [n for n in OPEN_TABLES if n in shown] + [n for n in shown if n not in OPEN_TABLES]
    specs = {}
    if (run_dir / "figures").is_dir():
        from initlab.report.figures import RUN_FIGURES

        specs = {spec.name: spec.about for spec in RUN_FIGURES}
    metrics = s.get("metrics") or {}
    test_acc = (metrics.get("test") or {}).get("acc")
    files, left = file_links(run_dir)
    html = render(
        "run.html.j2", title=f"initlab run {run_dir.name}", run_dir=str(run_dir),
        status=status, status_line=describe_status(s), epochs=s.get("epochs_run"),
        test_acc=None if not isinstance(test_acc, (int, float)) else f"{test_acc:.3f}",
        findings=[finding_view(f) for f in findings],
        unchecked=[f"{code} ({why})" for code, why in (unchecked or {}).items()],
        checked=[c for c in CODES if c not in (unchecked or {})],
        verdict=verdict(findings) if findings else "",
        figures=figure_links(run_dir / "figures", run_dir, specs),
        tables=[table_data(n, shown[n]) for n in ordered], open_tables=OPEN_TABLES,
        files=files, files_left=left,
        sweep_href=href(sweep_page, run_dir) if sweep_page is not None else None,
        lean=lean)
    return write_page(run_dir, html)


def _badge(text: str, css_class: str) -> str:
    return f'<span class="badge {escape(css_class)}">{escape(text)}</span>'


def write_job_pages(jobs: list, sweep_page_path: Path) -> dict[str, Path]:
    """The pages of ``jobs`` with a readable record, job name -> page, with the lean tables
    (:func:`~initlab.report.tables.run_tables`)."""
    from initlab.diagnose import unchecked_rules
    from initlab.record import RecordError, open_record
    from initlab.report import run_findings
    from initlab.report.tables import run_tables

    pages = {}
    for job in jobs:
        if not (job.job_dir / "summary.json").exists():
            continue
        try:
            record = open_record(job.job_dir)
            if job.metrics:  # the comparison read them: not parsed again
                record.give_rows("metrics", list(zip(*job.metrics.values())))
            findings = run_findings(record)
            pages[job.name] = run_page(record, findings, unchecked_rules(record),
                                       tables=run_tables(record, lean=True), sweep_page=sweep_page_path,
                                       lean=True)
        except (RecordError, OSError, ValueError):
            continue  # the comparison lists it with its error; there is no record to show
    return pages


def sweep_page(sweep_dir: Path, jobs: list, shown: list, tables: dict[str, Any],
               job_pages: dict[str, Path], kind: str = "sweep") -> Path:
    """Write the sweep's page: status counts, the sortable comparison (each job linked to
    its page), the other tables, the comparison figures and the sweep's own files."""
    comparison = table_data("comparison", tables["comparison"])
    # The findings go beside the status, not past the numbers at the table's far right.
    order = list(range(len(comparison.headers)))
    if "findings" in comparison.headers and "status" in comparison.headers:
        order.remove(f := comparison.headers.index("findings"))
        order.insert(comparison.headers.index("status") + 1, f)
        comparison.headers, comparison.numeric = ([xs[i] for i in order] for xs in
                                                  (comparison.headers, comparison.numeric))
        comparison.rows = [[row[i] for i in order] for row in comparison.rows]
    headers = comparison.headers
    col = {name: headers.index(name) for name in ("job", "status", "findings") if name in headers}
    for r, job in enumerate(shown[:len(comparison.rows)]):
        comparison.row_classes.append(f"row-{job.status.replace(' ', '-')}")
        if "job" in col:
            target = job_pages.get(job.name)
            if target is None and not job.job_dir.is_dir():  # in its group's record (no folder)
                comparison.cell_html[(r, col["job"])] = (
                    f'<span title="in its group record; `initlab report {escape(str(sweep_dir))} '
                    f'--job {escape(job.name)}` writes its folder">{escape(job.name)}</span>')
            else:
                link = href(target, sweep_dir) if target else href(job.job_dir, sweep_dir) + "/"
                comparison.cell_html[(r, col["job"])] = f'<a href="{escape(link)}">{escape(job.name)}</a>'
        if "status" in col:
            comparison.cell_html[(r, col["status"])] = _badge(
                job.status, f"status-{job.status.replace(' ', '-')}")
        if "findings" in col:
            cells = [_badge(code, f"severity-{job.severities.get(code, 'problem')}")
                     for code in job.findings]
            if job.error and not job.finished:
                cells.append(f'<span class="error">{escape(job.error)}</span>')
            comparison.cell_html[(r, col["findings"])] = " ".join(cells) or "–"
    counts = Counter(j.status for j in jobs)
    # A paper preset's claim table leads the page: it is the sweep's answer.
    claim = table_data("paper", tables["paper"]) if "paper" in tables else None
    others = [table_data(name, t) for name, t in tables.items() if name not in ("comparison", "paper")]
    files, left = file_links(sweep_dir, skip_dirs={j.name.split("/")[0] for j in jobs} | {GROUPS_DIR})
    # The comparison already imported it (its figures are drawn meanwhile).
    from initlab.report import COMPARISON_FIGURES

    html = render(
        "sweep.html.j2", title=f"initlab {kind} {sweep_dir.name}", kind=kind, sweep_dir=str(sweep_dir),
        n_jobs=len(jobs), counts=sorted(counts.items(), key=lambda kv: (kv[0] != "completed", kv[0])),
        comparison=comparison, more=len(jobs) - len(shown), tables=others, claim=claim,
        figures=figure_links(sweep_dir / "figures", sweep_dir, COMPARISON_FIGURES),
        unfinished=[(j.name, j.label, j.status, j.error) for j in jobs
                    if not j.finished and j.status != "running"][:200],
        files=files, files_left=left)
    return write_page(sweep_dir, html)
