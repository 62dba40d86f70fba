"""The figure code: the spec list and its sets, the honest-axes helpers (flat looks flat,
zeros apart from the log axis, NaN marked), figures of records that hold only NaN or only
zeros, the scheme draws behind the initial-weight figure, and the sweep helpers, each
checked against an independent computation.
"""

import csv
import math
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from initlab.record import read_record
from initlab.report import plotting
from initlab.report.figures import FIGURE_SETS, RUN_FIGURES, render_figures, selected_figures

KEY_FIGURES = {"loss_accuracy", "grad_norm_by_layer", "initial_weights", "decision_boundary"}


@pytest.fixture(scope="module")
def smoke_record(tmp_path_factory):
    """One in-process smoke run (3 layers, 4 wide, 20 epochs), record only."""
    from initlab.run import run
    from tests.conftest import compose_config

    out = tmp_path_factory.mktemp("figures") / "run"
    run(compose_config("trainer.progress=false", config_name="smoke"), out, quiet=True)
    return out


def _copy(src, dst):
    shutil.copytree(src, dst)
    shutil.rmtree(dst / "figures", ignore_errors=True)
    return dst


def _rewrite_csv(path, column: str, value: str) -> None:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
        fields = list(rows[0])
    for row in rows:
        row[column] = value
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)


# ------------------------------------------------------------------------ the spec list
def test_the_spec_list_is_the_one_place_figures_are_chosen(smoke_record):
    names = [s.name for s in RUN_FIGURES]
    assert len(names) == len(set(names))
    assert {s.name for s in RUN_FIGURES if s.key} == KEY_FIGURES
    assert FIGURE_SETS == ("none", "key", "full")
    record = read_record(smoke_record)
    assert selected_figures(record, "none") == []
    assert [s.name for s in selected_figures(record, "key")] == [n for n in names if n in KEY_FIGURES]
    full = [s.name for s in selected_figures(record, "full")]
    assert full == [n for n in names if n in full]  # reading order kept
    assert "grad_norm_heatmap" not in full  # a 3-layer net is not deep
    with pytest.raises(ValueError, match="key"):
        selected_figures(record, "most")


@pytest.mark.slow  # ~2 s: the README's test command stays under its budget
def test_render_figures_writes_exactly_the_chosen_set(smoke_record, tmp_path):
    run_dir = _copy(smoke_record, tmp_path / "run")
    record = read_record(run_dir)
    assert render_figures(record, "none") == []
    assert not (run_dir / "figures").exists()
    key = render_figures(record, "key")
    assert {p.stem for p in key} == KEY_FIGURES
    full = render_figures(record, "full", fmt="svg", dpi=50)
    assert {p.stem for p in full} == {s.name for s in selected_figures(record, "full")}
    assert all(p.suffix == ".svg" and p.stat().st_size > 0 for p in full)


# ------------------------------------------------------------------- records to survive
@pytest.mark.slow  # ~2 s: the README's test command stays under its budget
def test_an_all_nan_record_draws_every_figure(smoke_record, tmp_path):
    """`init.std=1e30`: every gradient norm and loss NaN; log axes must not raise."""
    run_dir = _copy(smoke_record, tmp_path / "nan")
    _rewrite_csv(run_dir / "grad_norms.csv", "norm", "nan")
    for column in ("train_loss", "dev_loss"):
        _rewrite_csv(run_dir / "metrics.csv", column, "nan")
    for column in ("mean", "std"):
        _rewrite_csv(run_dir / "activations.csv", column, "nan")
    record = read_record(run_dir)
    written = render_figures(record, "full")
    assert {p.stem for p in written} == {s.name for s in selected_figures(record, "full")}


@pytest.mark.slow  # ~3 s: the README's test command stays under its budget
def test_an_all_zero_record_draws_every_figure(smoke_record, tmp_path):
    """Dead ReLU: every gradient exactly 0 and every activation 0."""
    run_dir = _copy(smoke_record, tmp_path / "zero")
    _rewrite_csv(run_dir / "grad_norms.csv", "norm", "0.0")
    for column in ("mean", "std"):
        _rewrite_csv(run_dir / "activations.csv", column, "0.0")
    _rewrite_csv(run_dir / "activations.csv", "frac_zero", "1.0")
    record = read_record(run_dir)
    written = render_figures(record, "full")
    assert {p.stem for p in written} == {s.name for s in selected_figures(record, "full")}


# -------------------------------------------------------------------- honest axes
def test_a_flat_loss_gets_a_span_of_a_tenth_of_its_level():
    flat = np.linspace(0.69328, 0.69307, 40)  # the zero-init loss curve
    lo, hi = plotting.value_limits(flat)
    assert lo <= flat.min() and hi >= flat.max()
    assert hi - lo >= 0.1 * 0.69328
    assert (flat.max() - flat.min()) / (hi - lo) < 0.01  # under 1 % of the height
    # A real fall keeps its own range, with a small margin only.
    falling = np.array([0.7, 0.3, 0.1])
    lo, hi = plotting.value_limits(falling)
    assert 0.6 / (hi - lo) > 0.85
    # Non-negative data near zero are not given a negative range.
    lo, _ = plotting.value_limits([0.0, 0.0], nonnegative=True)
    assert lo >= -0.01
    assert plotting.value_limits([math.nan, math.inf]) is None


def test_log_limits_exist_for_any_data():
    assert plotting.log_limits([math.nan, 0.0, -1.0, math.inf]) is None
    lo, hi = plotting.log_limits([0.30, 0.31])
    assert math.log10(hi / lo) >= 2  # never a zoom onto a 3 % difference
    lo, hi = plotting.log_limits([1e-12, 1.0])
    assert lo < 1e-12 and hi > 1.0


def test_one_epoch_gets_one_integer_tick():
    fig, ax = plotting.plt.subplots()
    ax.plot([1], [0.5], marker="o")
    plotting.epoch_axis(ax, [1])
    assert list(ax.get_xticks()) == [1]
    assert ax.get_xlim() == (0.5, 1.5)
    plotting.plt.close(fig)


def test_zeros_go_to_their_own_strip_and_nan_to_the_top_edge():
    fig, gs = plotting.figure(6, 4)
    log = plotting.log_axes(fig, gs[0], zero_rows=1)
    values = [0.0, 1e-3, math.nan, math.inf, 1e-1]
    log.plot(range(5), values, color="k", marker="o", label="w")
    log.finish("norm", "layer")
    (line,) = log.ax.get_lines()
    drawn = np.asarray(line.get_ydata(), dtype=float)
    assert np.isnan(drawn[[0, 2, 3]]).all()  # neither 0 nor NaN/Inf is a point on the log axis
    assert drawn[1] == 1e-3 and drawn[4] == 1e-1
    strip_x = np.concatenate([np.asarray(ln.get_xdata(), dtype=float)
                              for ln in log.strip.get_lines()])
    assert strip_x.tolist() == [0.0]
    assert [t.get_text() for t in log.strip.get_yticklabels()] == ["= 0"]
    assert log.non_finite == 2
    assert log.ax.get_ylim()[0] > 0
    fig.canvas.draw()
    plotting.plt.close(fig)


def test_an_axis_with_nothing_to_draw_says_so():
    fig, gs = plotting.figure(6, 4)
    log = plotting.log_axes(fig, gs[0])
    log.plot([0, 1], [math.nan, math.nan], color="k")
    log.finish()
    texts = [t.get_text() for t in log.ax.texts]
    assert any("no positive finite value" in t for t in texts)
    fig.canvas.draw()  # "Data cannot be log-scaled" must not happen
    plotting.plt.close(fig)


def test_series_styles_differ_in_more_than_colour():
    styles = [plotting.series_style(i, 8) for i in range(8)]
    assert len({(s["linestyle"], s["marker"]) for s in styles}) >= 4
    assert len({s["marker"] for s in styles}) == 8
    widths = [s["linewidth"] for s in styles]
    assert widths == sorted(widths, reverse=True)  # the one below shows at the edges
    assert plotting.markevery(0, 200, 3) != plotting.markevery(1, 200, 3)
    # Past the palette's 8 colours no two of 32 series share colour, style and marker.
    many = [plotting.series_style(i, 32) for i in range(32)]
    assert len({(s["color"], s["linestyle"], s["marker"]) for s in many}) == 32


def test_evenly_spaced_keeps_first_and_last():
    assert plotting.evenly_spaced(range(50), 6) == [0, 10, 20, 29, 39, 49]
    assert plotting.evenly_spaced("abc", 6) == ["a", "b", "c"]


# ------------------------------------------------------------- decision-boundary markers
def _luminance(rgb) -> float:
    def channel(c):
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a, b) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_class_markers_contrast_with_every_probability_colour():
    from matplotlib.colors import to_rgb

    from initlab.report.boundary_figures import CLASS_MARKERS, PROBABILITY_CMAP

    alpha = 0.7  # as drawn, over the white figure
    # Both ends and the salmon / light blue between them (where class 1 used to vanish).
    for end in (0.0, 0.25, 0.5, 0.75, 1.0):
        background = alpha * np.array(PROBABILITY_CMAP(end)[:3]) + (1 - alpha)
        for _, _, face, edge in CLASS_MARKERS:
            best = max(_contrast(to_rgb(face), background), _contrast(to_rgb(edge), background))
            assert best >= 3, (end, face, edge, best)  # WCAG's minimum for graphics


# ------------------------------------------------------------ scheme draws and records
def test_scheme_draws_follow_the_closed_form_std(smoke_record):
    from initlab.report.weight_figures import scheme_draws

    record = read_record(smoke_record)  # kaiming_normal, relu, fan_in
    shapes = {"fc1.weight": (4, 2), "fc2.weight": (4, 4), "fc3.weight": (1, 4)}
    draws = scheme_draws(record, shapes)
    for name, (_, fan_in) in shapes.items():
        assert draws[name].size >= 8000
        assert np.std(draws[name]) == pytest.approx(math.sqrt(2) / math.sqrt(fan_in), rel=0.04)


def test_scheme_draws_of_a_layer_free_scheme_are_one_pool(smoke_record, tmp_path):
    import json

    from initlab.report.weight_figures import scheme_draws

    run_dir = _copy(smoke_record, tmp_path / "uniform")
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["config"]["init"] = {"name": "uniform", "low": -0.5, "high": 0.25, "bias": 0.0}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    draws = scheme_draws(read_record(run_dir), {"fc1.weight": (4, 2), "fc2.weight": (1, 4)})
    a, b = draws["fc1.weight"], draws["fc2.weight"]
    assert a is b and a.size == 10_000
    assert a.min() >= -0.5 and a.max() <= 0.25
    assert a.mean() == pytest.approx(-0.125, abs=0.01)
    assert a.std() == pytest.approx(0.75 / math.sqrt(12), rel=0.03)


def test_the_gradient_norm_matrix_matches_the_csv(smoke_record):
    from initlab.report.gradient_figures import grad_norms

    g = grad_norms(read_record(smoke_record))
    with (smoke_record / "grad_norms.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(g.steps) == len({r["step"] for r in rows})
    for r in rows[:: max(1, len(rows) // 50)]:
        i, j = g.params.index(r["param"]), list(g.steps).index(int(r["step"]))
        assert g.norms[i, j] == pytest.approx(float(r["norm"]))
        assert g.epochs[j] == int(r["epoch"])


# -------------------------------------------------------------------- sweep figures
def _job(metrics, **kw):
    """A sweep job as the comparison reads it: metrics.csv by column (given here by row)."""
    columns = {k: [m[k] for m in metrics] for k in metrics[0]} if metrics else {}
    return SimpleNamespace(metrics=columns, name="0", label="x", status="completed", **kw)


def test_mean_curve_matches_numpy_over_jobs_of_different_length():
    from initlab.report.compare_figures import _mean_curve

    a = _job([{"epoch": 1, "dev_loss": 0.5}, {"epoch": 2, "dev_loss": 0.3}])
    b = _job([{"epoch": 1, "dev_loss": 0.7}, {"epoch": 2, "dev_loss": math.nan},
              {"epoch": 3, "dev_loss": 0.1}])
    epochs, mean, std = _mean_curve([a, b], "dev_loss")
    assert epochs.tolist() == [1, 2, 3]
    assert mean == pytest.approx([np.mean([0.5, 0.7]), 0.3, 0.1])
    assert std == pytest.approx([np.std([0.5, 0.7]), 0.0, 0.0], abs=1e-12)


def test_final_accuracy_zooms_to_the_data_and_keeps_the_key_off_the_values(tmp_path):
    from initlab.report import compare_figures

    seeds = [SimpleNamespace(name=str(i), label=f"seed={i}", status="completed",
                             final=lambda split, key, v=v: v if split == "dev" else v - 0.01)
             for i, v in enumerate([0.82, 0.84, 0.86, 0.9])]
    series = [SimpleNamespace(label="all (4 seeds)", jobs=seeds, finished_jobs=seeds)]
    captured = {}
    save = compare_figures.save
    compare_figures.save = lambda fig, path, dpi: captured.setdefault("fig", fig) and path
    try:
        compare_figures.final_accuracy(series, "", tmp_path / "f.png", 50)
    finally:
        compare_figures.save = save
    fig = captured["fig"]
    (ax,) = fig.axes
    lo, hi = ax.get_xlim()
    assert 0.6 < lo < 0.81 and hi > 0.9  # zoomed, every seed inside
    assert ax.get_legend() is None and fig.legends  # the key is outside the axes
    plotting.plt.close(fig)


def test_report_modules_import_no_circle():
    code = ("import sys; import initlab.report.compare_figures, initlab.report.figures; "
            "assert 'initlab.report.compare' not in sys.modules; "
            "import initlab.report.plotting as p; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_a_layer_a_shallower_job_lacks_is_left_out_not_drawn_as_nan(tmp_path, monkeypatch):
    """A depth sweep: the depth-2 job has no fc3; its curve stops at fc2, and no NaN/Inf
    cross is drawn (none of the norms is non-finite)."""
    from initlab.report import compare_figures

    def job(norms):
        return SimpleNamespace(name="0", label="x", status="completed", grad_first=norms,
                               grad_last=norms, last_step=3)

    shallow = job({"fc1.weight": 0.2, "fc2.weight": 0.1})
    deep = job({"fc1.weight": 0.3, "fc2.weight": 0.2, "fc3.weight": 0.1})
    series = [SimpleNamespace(label=f"model.depth={d}", jobs=[j], finished_jobs=[j])
              for d, j in ((2, shallow), (3, deep))]
    counts, captured = [], {}
    monkeypatch.setattr(compare_figures, "note_non_finite", lambda ax, count: counts.append(count))
    monkeypatch.setattr(compare_figures, "save", lambda fig, path, dpi: captured.setdefault("fig", fig))
    compare_figures.grad_norm_by_layer(series, "", tmp_path / "g.png", 50)
    assert counts and set(counts) == {0}
    lines = [line for line in captured["fig"].axes[0].get_lines() if line.get_label() == "model.depth=2"]
    assert [len(line.get_xdata()) for line in lines] == [2]
    plotting.plt.close(captured["fig"])


# ------------------------------------------------------ what a newcomer sees (issue 24)
def test_layer_ticks_are_regular_for_any_depth():
    assert plotting.regular_ticks(5, 12) == [0, 1, 2, 3, 4]
    assert plotting.regular_ticks(20, 12) == list(range(0, 20, 2))  # fc1, fc3, ..., fc19
    assert plotting.regular_ticks(30, 8) == [0, 4, 9, 14, 19, 24, 29]  # fc1, fc5, ..., fc30
    for n in range(13, 120):
        shown = plotting.regular_ticks(n, 12)
        assert len(shown) <= 13 and len(set(np.diff(shown[1:]))) <= 1


@pytest.mark.slow
def test_zero_init_signal_words_agree_with_the_diagnosis(tmp_path):
    from initlab.report.tables import signal_notes
    from initlab.run import run
    from tests.conftest import compose_config

    out = tmp_path / "zeros"
    run(compose_config("init=zeros", "act=sigmoid", "trainer.epochs=2", "trainer.progress=false",
                       config_name="smoke"), out, quiet=True)
    record = read_record(out)
    notes = " ".join(signal_notes(record))
    assert "None" not in notes and "born dead" not in notes
    assert "constant output" in notes and "symmetric_weights" in notes
    # Every q is exactly 0: drawn on the "= 0" strip, not left out of an empty log panel.
    assert record.summary["init_signal"]["q"] == [0.0, 0.0, 0.0]
    import matplotlib.pyplot as plt

    from initlab.report import signal_figures

    closed = plt.close
    figures = []
    plt.close = lambda fig=None: figures.append(fig)  # keep the figure to look at it
    try:
        signal_figures.signal_at_init(record, tmp_path / "signal.png", 40)
    finally:
        plt.close = closed
    texts = [t.get_text() for ax in figures[0].axes for t in ax.get_yticklabels()]
    assert texts.count("= 0") == 2  # a strip under each panel
    assert "None" not in figures[0]._suptitle.get_text()
    plt.close(figures[0])


def test_a_relu_activation_band_never_goes_below_zero(smoke_record, tmp_path):
    import matplotlib.pyplot as plt

    from initlab.report import activation_figures

    record = read_record(smoke_record)
    assert any(r["mean"] - r["std"] < 0 for r in record.activations)  # the raw band would
    figures = []
    closed = plt.close
    plt.close = lambda fig=None: figures.append(fig)
    try:
        activation_figures.activation_stats_over_time(record, tmp_path / "a.png", 40)
    finally:
        plt.close = closed
    mean_ax = next(ax for ax in figures[0].axes if ax.get_title().startswith("Mean"))
    bands = [c for c in mean_ax.collections if c.get_paths()]
    assert bands and all(p.vertices[:, 1].min() >= 0 for c in bands for p in c.get_paths())
    plt.close(figures[0])


def test_a_figure_drawn_in_two_formats_shows_once_on_the_page(tmp_path):
    import os

    from initlab.report.page import figure_links

    figures = tmp_path / "figures"
    figures.mkdir()
    for i, name in enumerate(("loss_accuracy.png", "extra.png", "loss_accuracy.svg")):
        (figures / name).write_text("x")
        os.utime(figures / name, (1000 + i, 1000 + i))
    links = figure_links(figures, tmp_path, {"loss_accuracy": "curves"})
    assert [link.href for link in links] == ["figures/loss_accuracy.svg", "figures/extra.png"]
