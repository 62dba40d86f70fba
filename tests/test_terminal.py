"""What a terminal shows: tables at 60, 80 and 120 columns, counts, shell completion.

Paths in `initlab list` are whole and paste into `initlab report`; overrides break only
between overrides or after a `,` or `=`; finding codes are never cut; "1 epoch", not
"1 epochs"; completion offers the YAML options, not the dataclass schemas.
"""

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from initlab.cli import group_options
from initlab.diagnose import CODES
from initlab.record import RunRecord
from initlab.report.compare import Job, Series, comparison_table, grad_norm_table, seed_table
from initlab.report.overview import find_entries, overview_table
from initlab.report.tables import config_table, fold_lines, table_text

WIDTHS = (60, 80, 120)
LONG_OVERRIDES = ["init=zeros,kaiming_normal,xavier_uniform", "act=sigmoid", "model.depth=12",
                  "optim.lr=0.003", "data.noise=0.05"]


def shown(renderable, width: int, soft_wrap: bool = False) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(renderable, soft_wrap=soft_wrap)
    return console.file.getvalue()


def atoms(overrides: list[str]) -> list[str]:
    """The pieces an overrides cell may never break: split after every ',' and '='."""
    return [a for o in overrides for a in re.findall(r"[^,=]+[,=]?", o)]


# ----------------------------------------------------------------- folding overrides
def test_overrides_fold_between_overrides_then_after_commas_then_after_equals():
    text = "seed=range(0,3) act=sigmoid,relu init=zeros,kaiming_normal trainer.epochs=1"
    assert fold_lines(text, 200) == [text]
    assert fold_lines(text, 40) == ["seed=range(0,3) act=sigmoid,relu", "init=zeros,kaiming_normal",
                                    "trainer.epochs=1"]
    assert fold_lines(text, 20) == ["seed=range(0,3)", "act=sigmoid,relu", "init=zeros,",
                                    "kaiming_normal", "trainer.epochs=1"]
    assert fold_lines(text, 15)[-2:] == ["trainer.epochs=", "1"]
    # Narrower than a word: the word stays whole (a cut word would paste back wrong).
    assert "kaiming_normal" in fold_lines(text, 5)


@pytest.mark.parametrize("width", range(1, 80, 3))
def test_folded_lines_put_together_again_give_the_overrides_back(width):
    text = " ".join(LONG_OVERRIDES)
    lines = fold_lines(text, width)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")
    for line in lines:
        assert len(line) <= width or line in atoms(LONG_OVERRIDES)
        assert not line.startswith((",", "=", " "))


# ------------------------------------------------------------------- sweep tables
def job(i: int, overrides: list[str], findings, depth: int = 3) -> Job:
    j = Job(str(i), Path(f"/sweep/{i}"), overrides, "completed",
            summary={"metrics": {s: {"acc": 0.9, "loss": 0.25} for s in ("train", "dev", "test")},
                     "best_epoch": 7})
    j.findings = list(findings)
    j.grad_first = {f"fc{k}.weight": 1.2e-5 * k for k in range(1, depth + 1)}
    j.grad_last = {f"fc{k}.weight": 0.5 * k for k in range(1, depth + 1)}
    j.last_step = 100
    j.label = " ".join(overrides)
    return j


@pytest.fixture
def jobs() -> list[Job]:
    return [job(0, LONG_OVERRIDES, CODES), job(1, ["act=relu"], ["vanishing_gradient"], depth=12),
            job(2, ["act=lrelu", "init=normal", "init.std=0.001"], [], depth=12)]


def assert_fits_and_keeps_words(text: str, width: int, words: list[str], pieces=()) -> None:
    """No line wider than the terminal; every word whole, between blanks; every piece of an
    override (see atoms) on one line."""
    lines = text.splitlines()
    assert max(map(len, lines)) <= width, text
    for word in words:
        assert re.search(rf"(^|\s){re.escape(word)}(\s|$)", text), f"{word!r} cut:\n{text}"
    for piece in pieces:
        assert piece in text, f"{piece!r} cut:\n{text}"


@pytest.mark.parametrize("width", WIDTHS)
def test_comparison_shows_whole_codes_and_overrides_cut_only_at_boundaries(jobs, width):
    text = shown(comparison_table(jobs, "Sweep comparison"), width)
    assert_fits_and_keeps_words(text, width, [*CODES, "completed"], atoms(LONG_OVERRIDES))
    table = text.split("Not shown at this width")[0]
    assert "…" not in table  # the columns left out at 60 are named instead
    if width == 60:
        assert "Not shown at this width: train acc, …" in text
    if width == 120:
        assert "Not shown" not in text and "train" in text


@pytest.mark.parametrize("width", WIDTHS)
def test_gradient_table_keeps_first_and_last_layers_and_whole_numbers(jobs, width):
    text = shown(grad_norm_table(jobs), width)
    assert_fits_and_keeps_words(text, width, ["fc1", "fc12", "1.20e-05"], atoms(LONG_OVERRIDES))
    if width < 120:
        assert re.search(r"Not shown at this width: fc\d+, …, fc\d+\.", text)


@pytest.mark.parametrize("width", WIDTHS)
def test_seed_table_counts_seeds_in_the_singular_and_keeps_codes_whole(jobs, width):
    groups = [Series("act=relu (3 seeds)", jobs), Series("act=sigmoid (1 seed)", jobs[:1])]
    text = shown(seed_table(groups), width)
    assert_fits_and_keeps_words(text, width, [*CODES, "0.900"])
    assert "in 1 of 1 seed" in text and "1 of 1 seeds" not in text
    assert "in 2 of 3 seeds" in " ".join(text.split())


def test_columns_are_left_out_before_an_override_breaks_between_key_and_value():
    jobs = [job(i, [f"seed={i}", "act=sigmoid", "init=kaiming_normal"], ["symmetric_weights"])
            for i in range(3)]
    text = shown(comparison_table(jobs, "Sweep comparison"), 80)
    assert "init=kaiming_normal" in text and "Not shown at this width: train acc" in text
    assert "best" in text  # only as many columns go as it takes
    # At 120 nothing needs to go.
    assert "Not shown" not in shown(comparison_table(jobs, "Sweep comparison"), 120)


def test_a_table_too_narrow_for_its_words_still_gets_drawn(jobs):
    # Rich's own shrinking (ellipses) is the last resort; nothing raises.
    assert "Sweep comparison" in shown(comparison_table(jobs, "Sweep comparison"), 30)


def test_saved_table_text_is_the_fitted_table(jobs):
    text = table_text(comparison_table(jobs, "Sweep comparison"), width=80)
    assert_fits_and_keeps_words(text, 80, CODES, atoms(LONG_OVERRIDES))


# -------------------------------------------------------------------- run tables
def record(epochs: int, overrides: list[str]) -> RunRecord:
    config = {"model": {"depth": 3, "width": 4}, "trainer": {"epochs": epochs},
              "data": {"name": "moons"}, "act": {"name": "relu"}, "init": {"name": "zeros"},
              "optim": {"name": "sgd", "lr": 0.1}}
    return RunRecord(Path("/run"), {"seed": 0, "device": "cpu", "config": config}, config, overrides)


def test_one_epoch_reads_in_the_singular():
    assert "1 epoch, batch full" in table_text(config_table(record(1, [])))
    assert "2 epochs, batch full" in table_text(config_table(record(2, [])))
    assert "(3 Linear layers)" in table_text(config_table(record(1, [])))
    one_layer = record(1, [])
    one_layer.config["model"]["depth"] = 1
    assert "MLP 2-1 (1 Linear layer)" in table_text(config_table(one_layer))


@pytest.mark.parametrize("width", WIDTHS)
def test_run_configuration_breaks_overrides_only_at_boundaries(width):
    text = table_text(config_table(record(1, LONG_OVERRIDES)), width=width)
    assert_fits_and_keeps_words(text, width, [], atoms(LONG_OVERRIDES))


# ------------------------------------------------------------------ initlab list
def fake_run(run_dir: Path, overrides: list[str], status: str = "completed", epochs: int = 1) -> None:
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (run_dir / "summary.json").write_text(json.dumps(
        {"status": status, "epochs_run": epochs, "metrics": {"test": {"acc": 0.875}}}))


@pytest.fixture
def outputs(tmp_path) -> Path:
    out = tmp_path / "outputs"
    fake_run(out / "runs" / "2026-12-02" / "17-31-42-123456", [])
    fake_run(out / "runs" / "2026-12-02" / "17-33-55-654321", LONG_OVERRIDES, "failed")
    fake_run(out / "runs" / "a_run_directory_named_at_length_by_its_user", ["act=tanh"])
    fake_run(out / "runs" / "a_run_directory_named_at_length_by_its_user_for_the_record_keeping",
             ["act=tanh"])  # wider than 60 columns with its folder
    sweep = out / "multirun" / "2026-12-02" / "17-40-00-000000"
    for i, act in enumerate(("sigmoid", "relu")):
        fake_run(sweep / str(i), [f"act={act}", "init=zeros,kaiming_normal"], epochs=200)
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    task:\n    - act=sigmoid,relu\n    - init=zeros,kaiming_normal\n")
    return out


def listing(cwd: Path, width: int, *args: str) -> str:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": str(width)}
    script = Path(sys.executable).with_name("initlab")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "initlab.cli"]
    result = subprocess.run([*command, "list", *args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("width", WIDTHS)
def test_list_paths_are_whole_and_paste_into_report(outputs, tmp_path, width):
    out = listing(tmp_path, width, "outputs")
    entries = find_entries(outputs)
    assert len(entries) == 5
    for entry in entries:
        path = os.path.relpath(entry.path, tmp_path)  # as `initlab list outputs` names it
        if len(path) > width:
            continue  # only the terminal's own soft wrap can show it whole: see the next test
        lines = [line for line in out.splitlines() if re.search(rf"(^|\s){re.escape(path)}(\s|$)", line)]
        assert len(lines) == 1, f"{path} not whole on one line at {width} columns:\n{out}"
        pasted = tmp_path / path
        assert (pasted / "summary.json").exists() or (pasted / "multirun.yaml").exists()
    # A path longer than the terminal is printed whole on a line of its own (the terminal
    # soft-wraps it, and it still copies as one line); every other line fits.
    too_long = {os.path.relpath(e.path, tmp_path) for e in entries}
    fitting = "\n".join(line for line in out.splitlines()
                        if not (len(line) > width and line.strip() in too_long))
    assert_fits_and_keeps_words(fitting, width, [], atoms(LONG_OVERRIDES))
    assert "2 jobs: 2 completed" in out and "1 jobs" not in out
    assert "test acc 0.875–0.875" not in out  # two equal accuracies are one number


def test_list_is_a_table_when_it_fits_and_blocks_when_it_does_not(outputs, tmp_path):
    wide, narrow = listing(tmp_path, 200, "outputs"), listing(tmp_path, 80, "outputs")
    assert re.search(r"started\s+path\s+overrides\s+status", wide)
    assert "started" not in narrow
    # In blocks the path is a line of its own and the counts read as words.
    assert "\noutputs/runs/2026-12-02/17-33-55-654321\n" in narrow
    assert "1 epoch " in narrow and "200 epochs" not in narrow  # a sweep lists no epochs


def test_a_path_wider_than_the_terminal_is_printed_whole_without_soft_wrapping(outputs):
    text = shown(overview_table(find_entries(outputs), outputs), 40, soft_wrap=True)
    long_path = str(outputs / "runs" / "a_run_directory_named_at_length_by_its_user_for_the_record_keeping")
    assert long_path in text.splitlines()


# ------------------------------------------------------------------ completion
def complete(line: str, cwd: Path) -> list[str]:
    env = {**os.environ, "COMP_LINE": line, "COMP_POINT": str(len(line))}
    script = Path(sys.executable).with_name("initlab")
    result = subprocess.run([str(script), "-sc", "query=bash"], env=env, capture_output=True,
                            text=True, cwd=cwd, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.parametrize("group", sorted(group_options()))
def test_completion_offers_the_yaml_options_only(group, tmp_path):
    offered = complete(f"initlab run {group}=", tmp_path)
    assert offered == [f"{group}={o}" for o in group_options()[group]]


def test_completion_of_group_names_offers_no_schema(tmp_path):
    offered = complete("initlab run ", tmp_path)
    assert "act=" in offered and "init=" in offered
    assert not [w for w in offered if "schema" in w]


def test_an_unknown_option_lists_the_yaml_options_only(cfg_factory):
    with pytest.raises(Exception) as error:
        cfg_factory("act=nonesuch")
    listed = re.findall(r"^\t(\S+)$", str(error.value), flags=re.M)
    assert listed == group_options()["act"]


def test_list_names_a_run_of_another_primary_config_by_it(tmp_path):
    for name, config in (("smoke_run", "smoke"), ("default_run", "config")):
        fake_run(tmp_path / name, [] if config == "smoke" else ["act=tanh"])
        (tmp_path / name / ".hydra" / "hydra.yaml").write_text(
            f"hydra:\n  job:\n    name: app\n    config_name: {config}\n")
    fake_run(tmp_path / "bare_run", [])  # no hydra.yaml: an old or hand-made record
    labels = {e.path.name: e.overrides for e in find_entries(tmp_path)}
    assert labels == {"smoke_run": "-cn smoke", "default_run": "act=tanh", "bare_run": "defaults"}
