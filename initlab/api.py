"""initlab from Python and Jupyter: :func:`run` a config, :func:`load` a record, :func:`compare`
records, on the CLI's own path (Hydra's ``compose``, preflight's checks, the engine, the
report step). A :class:`Run` shows itself in Jupyter as its page (figures inline), a
:class:`Sweep` (a sweep or a comparison) as its comparison page; tables are pandas
DataFrames when pandas is installed, else lists of dicts."""

import base64
import csv
import html
import re
from pathlib import Path

from initlab.record import PAGE, SUMMARY, RecordError, read_record
from initlab.report.compare import COMPARED_FILE, COMPARISON_CSV, MULTIRUN_FILE

__all__ = ["Run", "Sweep", "compare", "load", "run"]


def _frame(rows: list[dict]):
    try:
        import pandas
    except ImportError:
        return rows
    return pandas.DataFrame(rows)


def _inline_page(folder: Path) -> str:
    """The folder's index.html with its figures inlined, in an iframe: a notebook shows it
    wherever the record lies, and the page's style stays inside it."""
    page = (folder / PAGE).read_text(encoding="utf-8")

    def inline(m: re.Match) -> str:
        path = folder / m[1]
        if path.suffix not in (".png", ".svg") or not path.is_file():
            return m[0]
        kind = "png" if path.suffix == ".png" else "svg+xml"
        return f'src="data:image/{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"'

    page = re.sub(r'src="([^":]+)"', inline, page)
    return (f'<iframe srcdoc="{html.escape(page)}" style="width:100%;height:720px;border:1px '
            f'solid #ddd"></iframe>')


class Run:
    """A run's record: ``summary``, ``findings`` (diagnosis codes), ``metrics`` (one row per
    epoch), ``grad_norms(step)`` (parameter -> norm); shown as its report page."""

    def __init__(self, path) -> None:
        self.path = Path(path)
        self.record = read_record(self.path)
        self.summary = self.record.summary

    @property
    def findings(self) -> list[str]:
        return [str(d.get("code")) for d in self.summary.get("diagnosis") or []]

    @property
    def metrics(self):
        return _frame(self.record.metrics)

    def grad_norms(self, step: int = 0) -> dict[str, float]:
        return {r["param"]: r["norm"] for r in self.record.grad_norms if r["step"] == step}

    def _repr_html_(self) -> str:
        if not (self.path / PAGE).exists():
            from rich.console import Console

            from initlab.report import render_run

            render_run(self.path, console=Console(quiet=True), figures="key", tables="brief")
        return _inline_page(self.path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}: {self.summary.get('status')}, findings {self.findings})"


class Sweep:
    """A sweep, or a comparison of runs and sweeps: ``table`` (comparison.csv, a row per
    job) and ``runs`` (the jobs with a record); shown as its comparison page."""

    def __init__(self, path, compared=()) -> None:
        self.path, self.compared = Path(path), list(compared)
        if not self.compared and (self.path / COMPARED_FILE).exists():  # `initlab compare`'s
            self.compared = (self.path / COMPARED_FILE).read_text().split("\n")[:-1]
        if not (self.path / COMPARISON_CSV).exists():
            from rich.console import Console

            from initlab.report.compare import render_sweep

            render_sweep(self.path, console=Console(quiet=True))
        with (self.path / COMPARISON_CSV).open(newline="") as f:
            self.rows = list(csv.DictReader(f))

    @property
    def table(self):
        return _frame(self.rows)

    @property
    def runs(self) -> list[Run]:
        from initlab.report.compare import read_runs

        if self.compared:
            dirs = [j.job_dir for j in read_runs(self.compared)[0]]
        else:
            dirs = [self.path / r["job"] for r in self.rows]
        return [Run(d) for d in dirs if (d / SUMMARY).exists()]

    def _repr_html_(self) -> str:
        return _inline_page(self.path)

    def __repr__(self) -> str:
        return f"Sweep({str(self.path)!r}: {len(self.rows)} jobs)"


def run(config_name: str = "config", overrides=(), out=None, overwrite: bool = False) -> Run:
    """Train ``initlab run -cn config_name overrides...`` into ``out`` (default: the CLI's
    ``outputs/runs/<date>/<time>``); bad input raises ConfigError in the CLI's words."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from initlab.config import ConfigError, register_configs
    from initlab.preflight import PreflightError, check_run, explain, release
    from initlab.run import run as train

    register_configs()
    overrides = [*overrides, *(["overwrite=true"] if overwrite else []),
                 *([f"hydra.run.dir={Path(out).absolute()}"] if out is not None else [])]
    GlobalHydra.instance().clear()
    try:  # a notebook must not exit: the CLI's one line, as an exception
        with initialize_config_module("initlab.conf", version_base="1.3"):
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
            out = Path(str(cfg.hydra.run.dir)).absolute()
            cfg.trainer.progress = False
            check_run(cfg)
    except PreflightError as e:
        raise ConfigError(str(e)) from None
    except Exception as e:  # Hydra's: an unknown option or key
        raise ConfigError(explain(e, config_name, overrides)) from None
    with open_dict(cfg):
        del cfg["hydra"]
    try:
        train(cfg, out, quiet=True)
        (out / ".hydra").mkdir(exist_ok=True)  # what labels it in comparisons, as Hydra writes it
        (out / ".hydra" / "overrides.yaml").write_text("".join(
            f"- {o}\n" for o in overrides if not o.startswith(("hydra.", "overwrite="))))
    finally:  # the folder's claim ends with the run, not with the kernel
        release(None, str(out))
    result = Run(out)
    result._repr_html_()  # the report step: key figures and the page, as `initlab run` draws
    return result


def load(path) -> "Run | Sweep":
    """The run (a folder with summary.json) or the sweep (multirun.yaml) at ``path``."""
    path = Path(path)
    if (path / SUMMARY).exists():
        return Run(path)
    if (path / MULTIRUN_FILE).exists() or (path / COMPARISON_CSV).exists():
        return Sweep(path)
    raise RecordError(f"{path} is neither a run (no {SUMMARY}) nor a sweep (no {MULTIRUN_FILE})")


def compare(*paths, out=None) -> Sweep:
    """``initlab compare``: the runs and sweeps at ``paths`` in one comparison in ``out``
    (default: ``outputs/compare/<date>/<time>``)."""
    from rich.console import Console

    from initlab.report.compare import default_compare_folder, render_sweep

    out = Path(out or default_compare_folder())
    paths = [getattr(p, "path", p) for p in paths]  # a Run or Sweep of this module, or a path
    render_sweep(out, console=Console(quiet=True), runs=paths)
    return Sweep(out, paths)
