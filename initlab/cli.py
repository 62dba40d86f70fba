"""The `initlab` command: a small dispatcher over subcommands, and the thin @hydra.main wrapper.

``initlab run [HYDRA FLAGS] [OVERRIDES]`` hands everything after ``run`` to Hydra's own
``@hydra.main``, so multirun, ``--cfg``, ``-cn``, ``-cd``, ``hydra.*`` overrides and shell
completion all work as Hydra has them. What is checked before a run or sweep makes its
folder is a Hydra callback (:mod:`initlab.preflight`); this module turns what Hydra raises
into one line and an exit status.
Nothing here imports torch or matplotlib at module level: ``--help``, ``--cfg job`` and
completion queries must stay fast.
"""

import itertools
import os
import sys
from functools import partial
from importlib import resources
from pathlib import Path

from initlab import __version__

USAGE = """\
usage: initlab <command> [args]

A lab for how weight initialization and activation functions shape a network's
gradients, activations and learning.

commands:
  run [HYDRA FLAGS] [OVERRIDES]   train and record one run (or a sweep with -m)
                                  `initlab run --help` lists every config group
  report PATH [--format F] [--dpi N] [--job N]
                                  re-render a run's tables, figures and diagnosis, compare the
                                  jobs of a sweep, or list a folder of runs and sweeps
  compare RUN_OR_SWEEP... [--out DIR]
                                  compare any runs and sweeps in one table, figure set and
                                  page (default DIR: outputs/compare/<date>/<time>)
  list [FOLDER]                   runs and sweeps under FOLDER (default: outputs),
                                  newest first
  export tensorboard PATH [--out DIR]
                                  write a run's or a sweep's record as TensorBoard events
                                  (default DIR: PATH/tensorboard; needs the tensorboard extra)

options:
  -h, --help      show this message
  --version       show the version

examples:
  initlab run                                   healthy default run
  initlab run init=zeros act=sigmoid            the zero-init failure
  initlab run -m act=sigmoid,relu,lrelu         one run per activation
  initlab run -m experiment=dead_relu           a textbook comparison
"""

CONFIG_PATH = "pkg://initlab.conf"


def group_options() -> dict[str, list[str]]:
    """Config group -> its option names, from the shipped YAML files."""
    root = resources.files("initlab.conf")
    return {
        group.name: sorted(f.name[: -len(".yaml")] for f in group.iterdir() if f.name.endswith(".yaml"))
        for group in root.iterdir()
        if group.is_dir() and group.name[0] not in "_."
    }


def _register_resolvers() -> None:
    from omegaconf import OmegaConf

    # The help template asks for this instead of Hydra's $APP_CONFIG_GROUPS: one line per
    # group with its options, read from the shipped YAML files.
    OmegaConf.register_new_resolver("initlab_groups", lambda: "\n".join(
        f"{g}: {', '.join(o)}" for g, o in sorted(group_options().items())), replace=True)


def run_task(cfg) -> None:
    """The task of `initlab run`: :func:`initlab.run.run_from_hydra`, imported (with torch)
    only once a job runs, so that --help, --cfg and completion stay fast."""
    from initlab.run import run_from_hydra

    run_from_hydra(cfg)


def _hydra_entry() -> None:
    """Call the @hydra.main app; sys.argv is already `initlab <hydra args>`."""
    import hydra

    # Not __main__.run_task under `python -m initlab.cli`: the batched launcher recognises
    # initlab's task by identity.
    from initlab import cli
    from initlab.config import register_configs

    register_configs()
    _register_resolvers()
    hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")(cli.run_task)()


def _one_line_parser(**kwargs):
    import argparse

    class OneLineParser(argparse.ArgumentParser):
        def error(self, message: str):  # argparse prints usage too: one line is enough
            print(f"{self.prog}: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
            sys.exit(2)

    return OneLineParser(**kwargs)


def _report(args: list[str], prog: str = "initlab report") -> int:
    """``initlab report|list``: bad input (not a record, a bad record file, a bad option) is
    one line and exit 2; anything else as :func:`_in_one_line` says."""
    import argparse

    from initlab.config import MAX_DPI
    from initlab.report import FIGURE_FORMATS

    def dpi(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not 1 <= value <= MAX_DPI:
            raise argparse.ArgumentTypeError(f"must be in [1, {MAX_DPI}] (got {value})")
        return value

    listing = prog.endswith("list")
    parser = _one_line_parser(
        prog=prog,
        description="List the runs and sweeps under a folder, newest first." if listing else
        "Re-render the tables, figures and diagnosis of a saved run (PATH holds summary.json), "
        "compare the jobs of a sweep (PATH holds multirun.yaml), or list the runs and "
        "sweeps under any other folder. Nothing is trained.",
    )
    parser.add_argument("path", type=Path, nargs="?" if listing else None,
                        help="a run, a sweep, or a folder of them")
    if not listing:
        parser.add_argument("--format", choices=FIGURE_FORMATS, default="png",
                            help="figure file format (default: png)")
        parser.add_argument("--dpi", type=dpi, default=120,
                            help=f"figure resolution, 1 to {MAX_DPI} (default: 120)")
        parser.add_argument("--job", type=int, metavar="N", default=None,
                            help="job N of the sweep at PATH; one that keeps no folder "
                                 "(hydra.launcher.job_folders) is trained again into PATH/N")
    ns, extra = parser.parse_known_args(args)
    if extra:
        paths = [a for a in extra if not a.startswith("-")]
        hint = (f"; to compare several runs or sweeps: initlab compare {ns.path} {' '.join(paths)}"
                if paths and not listing else "")
        parser.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    default, ns.path = ns.path is None, ns.path or Path("outputs")
    from initlab.record import RecordError
    from initlab.report import list_path, render_path

    def action() -> None:
        if listing:
            list_path(ns.path, default=default)
        else:
            render_path(ns.path, fmt=ns.format, dpi=ns.dpi, job=ns.job)

    return _in_one_line(prog, action, f"writing the report of {ns.path}",
                        ((RecordError, 2),), lambda: _save_report_traceback(ns.path))


def _compare(args: list[str], prog: str = "initlab compare") -> int:
    """``initlab compare PATH... [--out DIR]``: the runs and sweeps as one comparison."""

    from initlab.record import RecordError
    from initlab.report.compare import default_compare_folder, render_sweep

    parser = _one_line_parser(prog=prog, description="Compare any runs and sweeps, made at any "
                              "time, in one table, figure set and page, as a sweep's jobs are.")
    parser.add_argument("paths", metavar="RUN_OR_SWEEP", type=Path, nargs="+")
    parser.add_argument("--out", metavar="DIR", type=Path, default=None,
                        help="where the comparison goes (default: outputs/compare/<date>/<time>)")
    ns = parser.parse_args(args)
    out = ns.out or default_compare_folder()
    return _in_one_line(prog, lambda: render_sweep(out, runs=ns.paths), f"writing the comparison to {out}",
                        ((RecordError, 2),), lambda: _save_report_traceback(out, kind="compare"))


def _export(args: list[str], prog: str = "initlab export") -> int:
    """``initlab export FORMAT PATH [--out DIR]``: one line on stderr for anything wrong, as
    :func:`_report` does (bad input exit 2, a missing extra or an unwritable folder exit 1)."""

    from initlab.export import FORMATS, INSTALL_HINT

    parser = _one_line_parser(
        prog=prog,
        description="Write a run's record (PATH holds summary.json) or every job of a sweep "
        "(PATH holds multirun.yaml) as TensorBoard event files: per-epoch loss and accuracy, "
        "per-step gradient norms, weight and activation histograms, the config as hparams. "
        f"Needs the tensorboard extra: {INSTALL_HINT}",
    )
    parser.add_argument("format", metavar="FORMAT", choices=FORMATS,
                        help=f"the export format ({', '.join(FORMATS)})")
    parser.add_argument("path", metavar="PATH", type=Path, help="a run or a sweep folder")
    parser.add_argument("--out", metavar="DIR", type=Path, default=None,
                        help="where the events go (default: PATH/tensorboard; an earlier "
                        "export there is replaced)")
    if args and args[0] not in FORMATS and not args[0].startswith("-"):
        print(f"{prog}: error: unknown export format {args[0]!r} (choose from: "
              f"{', '.join(FORMATS)}); usage: {prog} tensorboard PATH [--out DIR]", file=sys.stderr)
        return 2
    ns = parser.parse_args(args)
    from initlab.export import ExportError, MissingExtra, export_tensorboard
    from initlab.record import RecordError

    return _in_one_line(prog, lambda: export_tensorboard(ns.path, out=ns.out),
                        f"writing the export of {ns.path}",
                        ((MissingExtra, 1), (RecordError, 2), (ExportError, 2)),
                        lambda: _save_report_traceback(ns.path, kind="export"))


def _in_one_line(prog: str, action, what: str, expected: tuple, save_traceback) -> int:
    """Run ``action()`` (a report, a listing, an export); anything wrong is one line on
    stderr and an exit status, never a traceback: the ``expected`` errors (type, status)
    as they say, a full disk or a read-only folder naming the file, Ctrl-C 130, and a bug
    as an internal error whose traceback ``save_traceback()`` keeps (it returns where)."""
    try:
        action()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        from initlab.preflight import one_line

        for kind, status in expected:
            if isinstance(e, kind):
                print(f"{prog}: error: {one_line(str(e))}", file=sys.stderr)
                return status
        if isinstance(e, OSError):
            print(f"{prog}: error: {e.filename or what}: {e.strerror or e}", file=sys.stderr)
            return 1
        print(f"{prog}: internal error: {one_line(f'{type(e).__name__}: {e}')} "
              f"({save_traceback()}; please report it)", file=sys.stderr)
        return 1
    return 0


def _save_report_traceback(path: Path, kind: str = "report") -> str:
    """Save the current traceback in the run's report_error.txt (a temporary file for an
    export, a sweep, a folder, or a run that cannot be written); returns where, or why it
    could not."""
    import tempfile

    from initlab.job import save_traceback
    from initlab.record import REPORT_ERROR_FILE, SUMMARY

    if kind == "report" and (path / SUMMARY).is_file():
        where = save_traceback(path, REPORT_ERROR_FILE)
        if not where.startswith("traceback not saved"):
            return where
    return save_traceback(Path(tempfile.gettempdir()), f"initlab-{kind}-error-{os.getpid()}.txt")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = sys.argv[0]
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    if argv[0] == "--version":
        print(f"initlab {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command in ("-sc", "--shell-completion"):
        # Completion installed by `initlab run -sc install=bash` calls us like this.
        words = os.environ.get("COMP_LINE", "").split(" ")
        if len(words) <= 2 or words[1] != "run":
            # Completing the command itself (`initlab r<TAB>`), or the path of report/list:
            # Hydra knows neither, so offer the commands, or nothing (the shell offers files).
            if len(words) <= 2:
                print(" ".join(c for c in COMMANDS if c.startswith(words[-1] if len(words) > 1 else "")))
            return 0
        # Hydra expects the app name then overrides in COMP_LINE: drop "run".
        os.environ["COMP_LINE"] = " ".join([words[0], *words[2:]])
        sys.argv = [prog, *argv]
        _hydra_entry()
        return 0
    if command in COMMANDS:
        return COMMANDS[command](rest)
    print(
        f"initlab: error: unknown command {command!r} (choose from: {', '.join(COMMANDS)}); "
        "see `initlab --help`",
        file=sys.stderr,
    )
    return 2


def _run_command(rest: list[str]) -> int:
    """`initlab run`: a signal anywhere (composing, between sweep jobs, drawing) ends in one
    line and exit 128 + signal; during training the run's own handler stops it cleanly."""
    import signal

    from initlab.interrupts import Interrupted, raise_interrupted

    signal.signal(signal.SIGTERM, raise_interrupted)
    try:
        return _run(sys.argv[0], rest)
    except (Interrupted, KeyboardInterrupt) as e:
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"initlab: interrupted by {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + signum


# Hydra's flags that take a value, and --info's optional one.
_FLAGS_WITH_VALUE = {"-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir",
                     "-c", "--cfg", "-p", "--package", "-sc", "--shell-completion",
                     "--experimental-rerun"}
_INFO = ("-i", "--info")
_INFO_CHOICES = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


def split_flags(args: list[str]) -> tuple[list[list[str]], list[str]]:
    """Hydra's flags, each with its value if it takes one, and the overrides. Hydra gets the
    flags first: where a flag stands among the overrides is no matter to the user, while
    Hydra's parser takes no override after a flag once one came before it
    (`-m seed=1,2 -cn smoke act=tanh`, `act=relu,tanh -m seed=1`)."""
    flags, overrides, i = [], [], 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-"):  # an override: key=value, +key=value, ~key
            overrides.append(arg)
        elif i + 1 < len(args) and (arg in _FLAGS_WITH_VALUE
                                    or arg in _INFO and args[i + 1] in _INFO_CHOICES):
            flags.append([arg, args[i + 1]])
            i += 1
        else:
            flags.append([arg])
        i += 1
    return flags, overrides


def _run(prog: str, rest: list[str]) -> int:
    """Hand `initlab run`'s arguments to the @hydra.main app; bad input is one line, exit 2.

    With HYDRA_FULL_ERROR set, Hydra raises what went wrong instead of printing it with its
    context (several lines, or a traceback): the one line is written here. A user who set
    it asked for the traceback, and gets it.
    """
    from hydra.errors import HydraException

    from initlab.preflight import Preflight, PreflightError, explain

    wants_traceback = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    flags, overrides = split_flags(rest)
    rest = [*itertools.chain(*flags), *overrides]
    sys.argv = [prog, *(_without_sweeps(rest) if "--help" in rest or "-h" in rest else rest)]
    try:
        _hydra_entry()
    except PreflightError as e:  # refused by initlab's own checks (a Hydra callback)
        print(f"initlab run: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        run = sys.modules.get("initlab.run")  # imported (with torch) once a job has started
        if run and isinstance(e, run.JobFailed):  # a job of a sweep failed and said why
            return 1
        if wants_traceback:
            raise
        if isinstance(e, OSError) and not isinstance(e, HydraException):
            # Hydra's own files (.hydra/) on a full or vanished disk
            where = e.filename or f"the output folder {Preflight.folder or ''}".rstrip()
            message = f"cannot write {where}: {e.strerror or e}"
        else:
            message = explain(e, _config_name(flags), [o for o in overrides if "=" in o])
        print(f"initlab run: error: {message}", file=sys.stderr)
        return 2
    finally:
        if wants_traceback is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
    return 0


def _without_sweeps(args: list[str]) -> list[str]:
    """Hydra's --help shows the config composed as a single run, which a sweep override
    (`act=relu,tanh`) is not: show it without them (`initlab run -m act=relu,tanh --help`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()

    def is_sweep(arg: str) -> bool:
        try:
            return parser.parse_override(arg).is_sweep_override()
        except Exception:  # Hydra says what is wrong with it, in the help's composition
            return False

    return [a for a in args if a.startswith("-") or "=" not in a or not is_sweep(a)]


def _config_name(flags: list[list[str]]) -> str:
    """The config name among Hydra's flags (:func:`split_flags`), for the hint of an error."""
    name = "config"
    for flag, *value in flags:
        key, eq, inline = flag.partition("=")
        if key in ("-cn", "--config-name") and (eq or value):
            name = inline if eq else value[0]
    return name


COMMANDS = {"run": _run_command, "report": _report, "compare": _compare,
            "list": partial(_report, prog="initlab list"), "export": _export}


def console_main() -> None:
    """The ``initlab`` command: :func:`main`, then the interpreter's own exit.

    At exit the interpreter runs its garbage collector over every object torch, Hydra and
    matplotlib made (~400k after a run: ~1 s on 2 busy cores, measured). Nothing initlab
    needs is left to a collection by then (its files are closed, exit handlers still run),
    so those objects are frozen out of it first (``gc.freeze``, Python's public API)."""
    import gc

    try:
        code = main()
    finally:
        gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    console_main()
