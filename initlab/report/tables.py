"""Rich tables of one run, from its record alone, and the cells every table uses: ``Folded``
(breaks between overrides, never inside a word), ``Fitted`` (a table that fits the
terminal), ``plural``; :func:`print_and_save` shows tables and writes ``tables/<name>.txt``."""

import copy
import dataclasses
import io
import math
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from initlab.options import describe_init, describe_option, input_size, is_custom
from initlab.record import COLUMNS, RunRecord


def plural(n: int, word: str, many: str | None = None) -> str:
    """``plural(1, "epoch")`` -> "1 epoch", ``plural(3, "epoch")`` -> "3 epochs"."""
    return f"{n} {word if n == 1 else many or word + 's'}"


# Where an overrides cell may break, best first: between overrides, then inside a sweep's
# list (after a comma), then after the key (after "="). Nothing else is ever broken.
BREAKS = (" ", ",", "=")


def _pieces(text: str, sep: str) -> list[str]:
    """``text`` cut just after every ``sep``; a blank separator is dropped instead."""
    if sep.isspace():
        return [p.strip() for p in text.split(sep) if p.strip()]
    parts = text.split(sep)
    pieces = [p + sep for p in parts[:-1]]
    return (pieces + [parts[-1]]) if parts[-1] else pieces


def _atoms(text: str, breaks: tuple[str, ...]) -> list[str]:
    """The pieces of ``text`` that :func:`fold_lines` never breaks."""
    pieces = [text]
    for sep in breaks:
        pieces = [q for p in pieces for q in _pieces(p, sep)]
    return pieces


def fold_lines(text: str, width: int, breaks: tuple[str, ...] = BREAKS) -> list[str]:
    """``text`` in lines of at most ``width``, broken only at ``breaks`` (best first); a
    piece with no break left stays whole, wider or not: a cut word would paste back wrong."""
    sep, rest = breaks[0], breaks[1:]
    lines: list[str] = []
    joiner = sep if sep.isspace() else ""
    for piece in _pieces(text, sep):
        if lines and len(lines[-1]) + len(joiner) + len(piece) <= width:
            lines[-1] += joiner + piece
        elif len(piece) <= width or not rest:
            lines.append(piece)
        else:  # a piece broken at a lesser break starts on a line of its own
            lines += fold_lines(piece, width, rest)
    return lines or [""]


class Folded:
    """A cell that wraps at ``breaks`` only (rich would split ``kaiming_normal`` into
    ``kaiming_nor``/``mal``): it tells the table its widest unbreakable piece."""

    def __init__(self, text: str, style: str = "", breaks: tuple[str, ...] = BREAKS) -> None:
        self.text = text
        self.style = style
        self.breaks = breaks

    def __str__(self) -> str:
        return self.text

    @property
    def comfortable_width(self) -> int:
        """The width that needs no break of the last kind: for overrides, none between a
        key and its value ("init=" over "kaiming_normal")."""
        return max(map(len, _atoms(self.text, self.breaks[:-1])), default=0)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        narrowest = max(map(len, _atoms(self.text, self.breaks)), default=0)
        return Measurement(narrowest, max(map(len, fold_lines(self.text, 10**9, self.breaks))))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = fold_lines(self.text, options.max_width, self.breaks)
        yield Text("\n".join(lines), style=self.style, no_wrap=True, overflow="ellipsis")


class OneOf:
    """A cell with a wide form and a narrow one ("0.912 ± 0.010" or "0.912" over "± 0.010"):
    the wide form where the column has room for it, else the narrow one."""

    def __init__(self, wide: str, narrow: str) -> None:
        self.wide, self.narrow = wide, narrow

    def __str__(self) -> str:
        return self.wide

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(_line_width(self.narrow), _line_width(self.wide))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        text = self.wide if _line_width(self.wide) <= options.max_width else self.narrow
        yield Text.from_markup(text, overflow="ellipsis")


def _line_width(markup: str) -> int:
    return max(len(line) for line in Text.from_markup(markup).plain.split("\n"))


def _fill(ranges: list[tuple[int, int]], room: int) -> list[int] | None:
    """Widths within each (narrowest, widest) range that fit ``room``: the widest columns
    give way first, each stopping at its narrowest. None when even that does not fit."""
    if sum(lo for lo, _ in ranges) > room:
        return None
    cap = max((hi for _, hi in ranges), default=0)
    while sum(max(lo, min(hi, cap)) for lo, hi in ranges) > room:
        cap -= 1
    return [max(lo, min(hi, cap)) for lo, hi in ranges]


class Fitted:
    """A table that fits the terminal without cutting a word, a code or a number: the
    ``optional`` columns (by header, first to go first) are left out, and said so, before an
    override breaks between key and value; below that, rich's own shrinking has the last word."""

    def __init__(self, table: Table, optional: tuple[str, ...] = ()) -> None:
        self.table = table
        self.optional = optional

    def layout(self, console: Console, options: ConsoleOptions) -> tuple[Table, list[str]] | None:
        """The table sized for ``options.max_width`` and the headers it leaves out; None
        when even its required columns do not fit."""
        columns = self.table.columns
        order = [i for name in self.optional for i, c in enumerate(columns) if str(c.header) == name]
        tries = [(k, True) for k in range(len(order) + 1)] + [(len(order), False)]
        for k, comfortable in tries:
            table = _sub_table(self.table, [i for i in range(len(columns)) if i not in order[:k]])
            widths = _column_widths(table, console, options, comfortable)
            if widths is not None:
                for column, width in zip(table.columns, widths, strict=True):
                    column.width = width
                return table, [_header(columns[i]) for i in sorted(order[:k])]
        return None

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        layout = self.layout(console, options)
        if layout is None:
            yield self.table
            return
        table, hidden = layout
        yield table
        if hidden:
            names = hidden if len(hidden) <= 4 else [hidden[0], "…", hidden[-1]]
            yield Text(f"Not shown at this width: {', '.join(names)}.", style="dim")


def _header(column) -> str:
    return str(column.header).replace("\n", " ")


def _sub_table(table: Table, keep: list[int]) -> Table:
    """A copy of ``table`` with only the columns ``keep``; the original is left as it is."""
    sub = copy.copy(table)
    sub.columns = [dataclasses.replace(table.columns[i], _index=n) for n, i in enumerate(keep)]
    return sub


def _column_widths(table: Table, console: Console, options: ConsoleOptions,
                   comfortable: bool = False) -> list[int] | None:
    """Each column's content width in ``options.max_width``; None when it cannot fit.
    ``comfortable``: no :class:`Folded` cell needs its last kind of break."""
    roomy = options.update_width(10**6)
    ranges = []
    for column in table.columns:
        sizes = [Measurement.get(console, roomy, cell) for cell in _cells(table, column)]
        widest = max((m.maximum for m in sizes), default=1)
        narrowest = widest if column.no_wrap else max((m.minimum for m in sizes), default=1)
        if comfortable:
            narrowest = max([narrowest, *(c.comfortable_width for c in column.cells
                                          if isinstance(c, Folded))])
        widest = max(widest, column.min_width or 0)
        ranges.append((min(max(narrowest, column.min_width or 0), widest), widest))
    # Padding and rules: what the table measures beyond its columns' content.
    for column in table.columns:
        column.width = 1
    room = options.max_width - (Measurement.get(console, roomy, table).maximum - len(ranges))
    for column in table.columns:
        column.width = None
    widths = _fill(ranges, room)
    if widths is None or widths == [hi for _, hi in ranges]:
        return widths
    # A narrowed column may gain nothing from width above its narrowest (a time put
    # under its date takes 10 columns of 16): it keeps 10, the others share the rest.
    for i, (column, w, (lo, hi)) in enumerate(zip(table.columns, widths, ranges, strict=True)):
        if lo < w < hi and _used(table, column, console, options, w) == \
                _used(table, column, console, options, lo):
            ranges[i] = (lo, lo)
    return _fill(ranges, room)


def _cells(table: Table, column) -> list:
    return [*([column.header] if table.show_header else []), *column.cells]


def _used(table: Table, column, console: Console, options: ConsoleOptions, width: int) -> int:
    narrow = options.update_width(width)
    return max((Segment.get_line_length(line) for cell in _cells(table, column)
                for line in console.render_lines(cell, narrow, pad=False)), default=0)


def fmt(value: float, digits: int = 4) -> str:
    """A number as a reader wants it: fixed for ordinary sizes, scientific for tiny/huge."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value == 0:
        return "0"
    if not math.isfinite(value):
        return str(value)
    if 1e-3 <= abs(value) < 1e4:
        return f"{value:.{digits}f}"
    return f"{value:.{digits - 1}e}"


def fmt_measured(value: float, digits: int = 4) -> str:
    """:func:`fmt` for values that were measured: a NaN is shown as NaN, never hidden as a
    missing value (initlab.diagnose counts them)."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return fmt(value, digits)


def numbers_table(title: str, *columns: str, text: int = 1) -> Table:
    """A table whose first ``text`` columns hold words and the others numbers (to the right)."""
    table = Table(title=title)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i < text else "right")
    return table


def config_table(record: RunRecord) -> Table:
    c = record.config or record.summary.get("config", {})
    s = record.summary
    table = Table(title="Run configuration", show_header=False)
    table.add_column("setting", style="bold")
    table.add_column("value")
    data, model, act, init = c.get("data", {}), c.get("model", {}), c.get("act", {}), c.get("init", {})
    optim, trainer = c.get("optim", {}), c.get("trainer", {})
    depth, width = model.get("depth"), model.get("width")
    if depth is not None:
        sizes = [input_size(c)] + [width] * (depth - 1) + [1]
        table.add_row("model", f"MLP {'-'.join(map(str, sizes))} ({plural(depth, 'Linear layer')})")
    args = ", ".join(f"{k}={v}" for k, v in act.items() if k != "name")
    table.add_row("activation", describe_option("act", act) if is_custom(act.get("name")) else
                  f"{act.get('name')}" + (f"({args})" if args else ""))
    bias = f"bias={init.get('bias')}" + (f" + N(0, {init['bias_std']}^2)" if init.get("bias_std") else "")
    table.add_row("init", f"{describe_init(init)}, {bias}")
    opt = {k: v for k, v in optim.items() if k != "name"}
    table.add_row("optimizer", f"{optim.get('name')}({', '.join(f'{k}={v}' for k, v in opt.items())})")
    table.add_row(
        "data",
        f"{describe_option('data', data)}{'' if input_size(c) == 2 else f' ({input_size(c)}-D)'}: "
        f"{data.get('n_train')} train / {data.get('n_dev')} dev / "
        f"{data.get('n_test')} test, noise {data.get('noise')}",
    )
    batch = trainer.get("batch_size") or "full"
    epochs = trainer.get("epochs")
    table.add_row("training", f"{'?' if epochs is None else plural(epochs, 'epoch')}, batch {batch}")
    table.add_row("seed / device", f"{s.get('seed')} / {s.get('device')}")
    if record.overrides:
        table.add_row("overrides", Folded(" ".join(record.overrides)))
    return table


def metrics_table(record: RunRecord) -> Table:
    s = record.summary
    table = numbers_table(f"Final metrics (best-on-dev model, epoch {s.get('best_epoch')})",
                          "split", "loss", "accuracy")
    for split in ("train", "dev", "test"):
        m = s.get("metrics", {}).get(split)
        if m:
            table.add_row(split, fmt_measured(m["loss"]), f"{m['acc']:.3f}")
    if rows := record.tuples("metrics"):  # where the progress bar ended, as metrics.csv logs it
        last = dict(zip(COLUMNS["metrics.csv"], rows[-1]))
        table.add_section()
        for split, mark in (("train", "*"), ("dev", "")):
            table.add_row(f"epoch {last['epoch']} {split}{mark}", fmt_measured(last[f"{split}_loss"]),
                          f"{last[f'{split}_acc']:.3f}")
        table.caption = "* before the epoch's step, as metrics.csv logs it"
    return table


def training_log_table(record: RunRecord) -> Table:
    log_every = record.summary.get("config", {}).get("trainer", {}).get("log_every", 1)
    table = numbers_table("Training log (train: before the epoch's step; dev: after it)",
                          "epoch", "train loss", "train acc", "dev loss", "dev acc", text=0)
    last = record.metrics[-1]["epoch"] if record.metrics else None
    for m in record.metrics:
        if m["epoch"] % log_every == 0 or m["epoch"] in (1, last):
            table.add_row(str(m["epoch"]), fmt_measured(m["train_loss"]), f"{m['train_acc']:.3f}",
                          fmt_measured(m["dev_loss"]), f"{m['dev_acc']:.3f}")
    return table


def grad_norm_table(record: RunRecord) -> Table:
    """Every parameter's gradient norm at the first and the last recorded step, read from
    grad_norms.csv."""
    from initlab.record import grad_norm_ends

    return grad_norm_ends_table(grad_norm_ends(record))


def grad_norm_ends_table(ends: dict) -> Table:
    """The gradient-norm table from ``{first, last, last_step}`` (grad_norms.csv's ends, or
    the copy in summary.json that a sweep's job pages read)."""
    first, last = ends.get("first") or {}, ends.get("last") or {}
    last_step = ends.get("last_step")
    several = last_step not in (None, 0)
    table = numbers_table("Gradient L2 norms (after backward, before the step)", "parameter",
                          "step 0", *([f"step {last_step}"] if several else []))
    for name, value in first.items():
        table.add_row(name, fmt_measured(value),
                      *([fmt_measured(last.get(name, math.nan))] if several else []))
    return table


def _units(values: list[float], shape: list[int]) -> Iterator[tuple[str, list[float]]]:
    if len(shape) == 2:
        cols = shape[1]
        for r in range(shape[0]):
            yield f"[{r}]", values[r * cols : (r + 1) * cols]
    else:
        yield "", values


def weights_table(record: RunRecord) -> Table | None:
    """Initial and final weights, one row per unit (the textbook's print_weight)."""
    if not record.weights:
        return None
    epochs = sorted({w["epoch"] for w in record.weights})
    first, last = epochs[0], epochs[-1]
    by_epoch: dict[int, dict[str, list[float]]] = {first: {}, last: {}}
    for w in record.weights:
        if w["epoch"] in by_epoch:
            by_epoch[w["epoch"]].setdefault(w["param"], []).append(w["value"])
    table = Table(title=f"Weights per unit, epoch {first} and epoch {last}")
    table.add_column("parameter")
    table.add_column(f"epoch {first}")
    table.add_column(f"epoch {last}")
    shapes = record.summary.get("param_shapes", {})
    for name, shape in shapes.items():
        init_units = dict(_units(by_epoch[first].get(name, []), shape))
        for unit, values in _units(by_epoch[last].get(name, []), shape):
            table.add_row(
                f"{name}{unit}",
                " ".join(weight_cell(v) for v in init_units.get(unit, [])),
                " ".join(weight_cell(v) for v in values),
            )
    return table


def weight_cell(value: float) -> str:
    """A weight with 3 significant digits at any size (-2.7e-07, not -0.0000): identical
    rows that do move, the zero-init lesson, stay visible."""
    if value == 0 or not math.isfinite(value):
        return f"{value:+g}"
    return f"{value:+.3g}"


def activation_table(record: RunRecord) -> Table | None:
    if not record.activations:
        return None
    last = max(a["epoch"] for a in record.activations)
    table = numbers_table(f"Hidden activations on the training set, epoch {last}",
                          "layer", "mean", "std", "frac zero", "frac saturated")
    for a in record.activations:
        if a["epoch"] == last:
            table.add_row(a["layer"], fmt_measured(a["mean"]), fmt_measured(a["std"]),
                          f"{a['frac_zero']:.3f}",
                          "–" if math.isnan(a["frac_saturated"]) else f"{a['frac_saturated']:.3f}")
    return table


def signal_table(record: RunRecord) -> Table | None:
    """Signal propagation at init (summary.json init_signal), measured beside mean-field
    theory's prediction where it applies."""
    block = record.summary.get("init_signal")
    if not isinstance(block, dict) or not block.get("layers"):
        return None
    theory = block.get("theory") or {}
    title = "Signal at init: measured"
    if theory:
        title += (f" (theory: sigma_w^2 {theory['sigma_w2']:.3g}, sigma_b^2 {theory['sigma_b2']:.3g}, "
                  f"chi_1 {theory['chi1']:.3g}: {theory['phase']})")
    table = numbers_table(title, "layer", "q", "q theory", "pair corr", "|grad|^2", "|grad|^2 theory")

    def cell(values, k):
        v = (values or [None] * (k + 1))[k]
        return "–" if v is None else fmt(v, 3)

    for k, layer in enumerate(block["layers"]):
        table.add_row(layer, cell(block.get("q"), k), cell(theory.get("q"), k),
                      cell(block.get("corr"), k), cell(block.get("grad_sq"), k),
                      cell(theory.get("grad_sq"), k))
    table.caption = "; ".join(signal_notes(record))
    return table


def signal_notes(record: RunRecord) -> list[str]:
    """What the signal at init says of the whole net, in the diagnosis' own words: a constant
    output is "born dead" only when the diagnosis says so (zero init is symmetric instead)."""
    block = record.summary["init_signal"]
    notes = []
    if block.get("grad_factor") is not None:
        notes.append(f"gradient ×{block['grad_factor']:.3g} a layer toward the input")
    if block.get("born_dead"):
        codes = [str(d.get("code")) for d in record.summary.get("diagnosis") or []
                 if isinstance(d, dict) and d.get("severity", "problem") == "problem"]
        dead = block.get("dead_layer")
        notes.append(("born dead" if "born_dead" in codes else "constant output")
                     + (f" ({dead} is 0 on every input)" if dead else "")
                     + (f"; diagnosis: {', '.join(codes)}" if codes else ""))
    return notes


def run_tables(record: RunRecord, lean: bool = False) -> dict[str, Table]:
    """Every table of a run, by the file name it is saved under. ``lean``: a job page's, from
    the summary and the short CSVs (~4 ms a job instead of ~40 ms): the training log and
    the weights per unit are one ``initlab report JOB`` away."""
    tables = {
        "config": config_table(record),
        "training_log": None if lean else training_log_table(record),
        "grad_norms": (grad_norm_ends_table(record.summary.get("grad_norms") or {}) if lean
                       else grad_norm_table(record)),
        "weights": None if lean else weights_table(record),
        "activations": activation_table(record),
        "signal": signal_table(record),
        "metrics": metrics_table(record),
    }
    return {name: t for name, t in tables.items() if t is not None and t.row_count}


def table_text(table: Table | Fitted, width: int = 120) -> str:
    """The table as plain text, exactly as a terminal of ``width`` columns shows it."""
    # Not Jupyter's display even there: the text goes to the file only.
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None,
                      force_jupyter=False)
    console.print(Fitted(table) if isinstance(table, Table) else table)
    return console.export_text()


def print_and_save(tables: dict[str, Table | Fitted], console: Console, tables_dir: Path,
                   shown=None) -> None:
    """Save every table under ``tables_dir``; print those named in ``shown`` (default: all)."""
    tables_dir.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        # A quiet console still lays a table out: a 200-row one, ~0.3 s.
        if not console.quiet and (shown is None or name in shown):
            console.print(Fitted(table) if isinstance(table, Table) else table)
        (tables_dir / f"{name}.txt").write_text(table_text(table))
