"""The `initlab` command: a small dispatcher over subcommands, and the thin @hydra.main wrapper.

``initlab run [HYDRA FLAGS] [OVERRIDES]`` hands everything after ``run`` to Hydra, so
multirun, ``--cfg``, ``-cn``, ``hydra.*`` overrides and shell completion all keep working.
Nothing here imports torch or matplotlib at module level: ``--help``, ``--cfg job`` and
completion queries must stay fast.
"""

import os
import sys
from dataclasses import dataclass, field
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
  report PATH [--format F] [--dpi N]
                                  re-render a run's tables, figures and diagnosis, compare the
                                  jobs of a sweep, or list a folder of runs and sweeps
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

COMMANDS = ("run", "report", "list", "export")
CONFIG_PATH = "pkg://initlab.conf"


def config_groups_listing() -> str:
    """One line per config group and its options, read from the shipped YAML files."""
    return "\n".join(f"{g}: {', '.join(o)}" for g, o in sorted(group_options().items()))


def group_options() -> dict[str, list[str]]:
    """Config group -> its option names, from the shipped YAML files."""
    root = resources.files("initlab.conf")
    return {
        group.name: sorted(f.name[: -len(".yaml")] for f in group.iterdir() if f.name.endswith(".yaml"))
        for group in root.iterdir()
        if group.is_dir() and group.name[0] not in "_."
    }


# Hydra flags after which a config is composed and a job runs; with any other flag
# (--help, --cfg, -sc, --info, ...) Hydra does something else and we stay out of its way.
_RUN_FLAGS = {"-m", "--multirun", "-cn", "--config-name"}


# Lines of Hydra/OmegaConf errors that say where, not what; dropped from the one-line form.
_NOISE_PREFIXES = ("reference_type=", "object_type=", "provider=", "Config search path")


def _one_line(message: str) -> str:
    lines = [line.strip() for line in str(message).splitlines()]
    return "; ".join(x for x in lines if x and not x.startswith(_NOISE_PREFIXES))


@dataclass
class RunArgs:
    """The arguments of `initlab run`, split the way Hydra reads them."""

    config_name: str = "config"
    overrides: list[str] = field(default_factory=list)
    multirun: bool = False
    # Any other Hydra flag (--help, --cfg, -sc, --info, ...): Hydra does something else
    # than a run, and initlab stays out of its way.
    other_flags: bool = False
    sweep_dir: str | None = None  # set once the sweep's config is composed


def parse_run_args(args: list[str]) -> RunArgs:
    parsed = RunArgs()
    parsed.other_flags = any(a.startswith("-") and a.split("=")[0] not in _RUN_FLAGS for a in args)
    it = iter(args)
    for arg in it:
        if arg in ("-cn", "--config-name"):
            parsed.config_name = next(it, "config")
        elif arg.startswith("--config-name="):
            parsed.config_name = arg.split("=", 1)[1]
        elif arg in ("-m", "--multirun"):
            parsed.multirun = True
        elif arg.startswith("hydra.mode="):  # the long way of saying -m (or not)
            parsed.multirun = arg.split("=", 1)[1].upper() == "MULTIRUN"
        else:
            parsed.overrides.append(arg)
    return parsed


def check_group_options(overrides: list[str]) -> str | None:
    """A one-line error for a config-group option that does not exist (sweeps included)."""
    options = group_options()
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if not sep or key not in options or any(c in value for c in "()[]{}$"):
            continue
        for choice in value.split(","):
            if choice != "null" and choice not in options[key]:
                return (f"{key}={choice} is not an option of '{key}' "
                        f"(choose from: {', '.join(options[key])})")
    return None


def preflight(args: list[str]) -> str | None:
    """Check the overrides of `initlab run` before Hydra creates any directory.

    Returns a one-line error, or None when the run may start. Group options are checked
    for single runs and sweeps; a single run is also composed and range-checked (see
    :func:`compose_single_run`), so bad values fail in one line instead of in Hydra's
    multi-line report.
    """
    parsed = parse_run_args(args)
    if parsed.other_flags:
        return None
    error = check_group_options(parsed.overrides)
    if error or parsed.multirun:
        return error  # sweep syntax (a,b / range()) is Hydra's to expand, per job
    return compose_single_run(parsed)[0]


def _hydra_app():
    """Hydra's app object for initlab's packaged configs (what @hydra.main would build)."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path

    from initlab.config import register_configs

    register_configs()
    _register_resolvers()
    return Hydra.create_main_hydra2(task_name="initlab",
                                    config_search_path=create_config_search_path(CONFIG_PATH))


def compose_single_run(parsed: RunArgs):
    """Compose a single run's config once, with Hydra's own node, and check it.

    Returns ``(error, hydra_app, cfg)``: a one-line error (and no config) when the run must
    not start. The same composition is then handed to the run (:func:`run_single`), so a
    run pays for Hydra's composition once, not three times.
    """
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from initlab.budget import check_budget
    from initlab.config import ConfigError, validate

    app = _hydra_app()
    try:
        # Hydra records the mode as an override of its own, so the job's files match its.
        cfg = app.compose_config(parsed.config_name, [*parsed.overrides, "hydra.mode=RUN"],
                                 run_mode=RunMode.RUN, with_log_configuration=False)
        validate(cfg)
        check_budget(cfg, Path(OmegaConf.select(cfg, "hydra.run.dir")))  # Hydra's `now` is cached
        if cfg.trainer.device == "cuda":  # torch only for this check, not for every run
            import torch

            if not torch.cuda.is_available():
                raise ConfigError("trainer.device=cuda but no CUDA GPU is available here; "
                                  "use trainer.device=cpu or trainer.device=auto")
    except ConfigError as e:
        return str(e), None, None
    except Exception as e:  # Hydra/OmegaConf composition errors: keep their words, one line
        return (_unknown_key(app, str(e), parsed.config_name, parsed.overrides)
                or _one_line(f"{e}; {e.__cause__}" if e.__cause__ else str(e))), None, None
    error = prepare_output_dir(cfg, "hydra.run.dir")
    return (error, None, None) if error else (None, app, cfg)


MULTIRUN_OVERRIDE = "hydra.mode=MULTIRUN"


def _reuse_next_composition(app) -> None:
    """Make ``app``'s config loader remember its next composition and hand a copy of it to
    the one identical request that follows: the sweep's check composes exactly what Hydra's
    multirun composes again right after (~0.35 s each; a copy costs ~10 ms)."""
    import copy

    loader = app.config_loader
    load = loader.load_configuration
    first: list = []  # [the request, a copy of its composition]

    def load_configuration(*args, **kwargs):
        request = repr((args, sorted(kwargs.items())))
        if first and first[0] == request:
            loader.load_configuration = load  # once: later compositions are Hydra's own
            return first[1]
        cfg = load(*args, **kwargs)
        if not first:
            first[:] = [request, copy.deepcopy(cfg)]
        return cfg

    loader.load_configuration = load_configuration


def compose_sweep(app, parsed: RunArgs) -> str | None:
    """Check a sweep before Hydra creates its folder: its keys (by composing its first job:
    a misspelled key is wrong for every job, while a bad value fails only its own job) and
    its folder. Returns a one-line error, or None."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    try:
        # The very composition Hydra's multirun asks for next (run_sweep): kept for it.
        _reuse_next_composition(app)
        cfg = app.compose_config(parsed.config_name, [*parsed.overrides, MULTIRUN_OVERRIDE],
                                 run_mode=RunMode.MULTIRUN, with_log_configuration=False)
        # As Hydra's BasicSweeper expands a sweep: a preset's own params, then the command's.
        params = cfg.hydra.sweeper.get("params") or {}
        arguments = [f"{k}={v}" for k, v in params.items()] + list(parsed.overrides)
        parser = OverridesParser.create(config_loader=app.config_loader)
        parsed_overrides = parser.parse_overrides(arguments)
        swept = {o.get_key_element().lstrip("+~") for o in parsed_overrides if o.is_sweep_override()}
        batches = BasicSweeper.split_arguments(parsed_overrides, None)
        first_job = list(batches[0][0]) if batches and batches[0] else []
    except Exception as e:
        return _one_line(f"{e}; {e.__cause__}" if e.__cause__ else str(e))
    from initlab.config import ConfigError, validate

    try:
        validate(app.compose_config(parsed.config_name, first_job, run_mode=RunMode.RUN,
                                    with_log_configuration=False))
    except ConfigError as e:
        # A bad value the sweep does not vary is bad for every job: refuse it now. One
        # that it varies (model.depth=2,0) fails only its own jobs.
        key = str(e).split(" ", 1)[0].split("=", 1)[0]
        if not any(key == k or key.startswith(f"{k}.") for k in swept):
            return str(e)
    except Exception as e:  # a key or type Hydra cannot compose: its sweeper would refuse too
        return (_unknown_key(app, str(e), parsed.config_name, first_job)
                or _one_line(f"{e}; {e.__cause__}" if e.__cause__ else str(e)))
    error = prepare_output_dir(cfg, "hydra.sweep.dir")
    parsed.sweep_dir = None if error else str(cfg.hydra.sweep.dir)
    return error


def prepare_output_dir(cfg, key: str) -> str | None:
    """Make sure the run (or sweep) folder can be written and holds no earlier record.

    A folder that already holds one is refused in one line, unless ``overwrite=true``: then
    the old record is removed first, so no stale file mixes into the new one. The folder
    is created here, after every check of the config passed, so bad input leaves none.
    """
    from omegaconf import OmegaConf

    from initlab.record import RECORD_PATHS, SUMMARY
    from initlab.report.compare import MULTIRUN_FILE, NOT_JOB_DIRS, find_job_dirs

    try:
        # Hydra's `now` resolver caches its value: the run gets this very folder.
        path = Path(str(OmegaConf.select(cfg, key)))
    except Exception as e:
        return f"{key} cannot be resolved: {_one_line(str(e))}"
    if not str(OmegaConf.select(cfg, key)).strip():
        return f"{key} is empty; name the folder the record goes to"
    if path.exists() and not path.is_dir():
        return f"{key}={path} is a file, not a folder"
    sweep = key == "hydra.sweep.dir"
    old = [] if not path.is_dir() else (
        ([path / MULTIRUN_FILE] if (path / MULTIRUN_FILE).exists() else []) + find_job_dirs(path)
        if sweep else ([path / SUMMARY] if (path / SUMMARY).exists() else []))
    if old and not cfg.get("overwrite", False):
        what = "a sweep" if sweep else "a run record"
        return (f"{path} already holds {what}; choose another {key}, or add overwrite=true "
                f"to replace it")
    try:
        if old:
            _remove([*(path / name for name in RECORD_PATHS)] if not sweep else
                    [path / MULTIRUN_FILE, *(path / d for d in NOT_JOB_DIRS),
                     path / "comparison.csv", path / "seed_summary.csv",
                     *(d for d in old if d.is_dir())])
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".initlab-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        return f"cannot write to {path}: {e.strerror or e}"
    return None


def _remove(paths) -> None:
    import shutil

    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def run_single(app, cfg, config_name: str) -> None:
    """Run one job from an already composed config: the body of Hydra's own ``Hydra.run``
    (callbacks, the job's output dir and ``.hydra/`` files, logging), minus its composition."""
    from hydra._internal.callbacks import Callbacks
    from hydra.core.utils import run_job
    from hydra.types import HydraContext

    from initlab.run import run_from_hydra

    callbacks = Callbacks(cfg)
    callbacks.on_run_start(config=cfg, config_name=config_name)
    ret = run_job(
        hydra_context=HydraContext(config_loader=app.config_loader, callbacks=callbacks),
        task_function=run_from_hydra,
        config=cfg,
        job_dir_key="hydra.run.dir",
        job_subdir_key=None,
        configure_logging=True,
    )
    callbacks.on_run_end(config=cfg, config_name=config_name, job_return=ret)
    _ = ret.return_value  # re-raises what the job raised


def _unknown_key(app, message: str, config_name: str, overrides: list[str]) -> str | None:
    """For a key the config does not have, Hydra suggests `+key=value`, which would add a
    key nothing reads. Say instead which keys there are, and which option has this one."""
    import re
    from dataclasses import fields

    from hydra.types import RunMode

    from initlab.config import OPTION_SCHEMAS

    match = re.search(r"Could not override '([\w.]+)'", message)
    if not match:
        return None
    dotted = match.group(1)
    parent, _, key = dotted.rpartition(".")
    rest = [o for o in overrides if not o.startswith(f"{dotted}=")]
    try:
        # Only on this error path is the config composed a second time.
        cfg = app.compose_config(config_name, rest, run_mode=RunMode.RUN)
    except Exception:
        return None
    # The first part of the dotted key that the config lacks is the one to name.
    node, seen = cfg, []
    for part in parent.split(".") if parent else []:
        if part not in node:
            dotted, parent, key = ".".join([*seen, part]), ".".join(seen), part
            break
        node, seen = node[part], [*seen, part]
    keys = ", ".join(k for k in node.keys() if not str(k).startswith("hydra"))
    if parent in OPTION_SCHEMAS:
        owners = sorted(name for name, schema in OPTION_SCHEMAS[parent][0].items()
                        if key in {f.name for f in fields(schema)})
        hint = f"; it belongs to {parent}={' / '.join(owners)}" if owners else ""
        return f"{dotted} does not apply to {parent}={node.name} (its keys: {keys}){hint}"
    return f"{dotted} is not a config key (keys{' of ' + parent if parent else ''}: {keys})"


def _register_resolvers() -> None:
    from omegaconf import OmegaConf

    # The help template asks for this instead of Hydra's $APP_CONFIG_GROUPS: one line per
    # group with its options, read from the shipped YAML files.
    OmegaConf.register_new_resolver("initlab_groups", config_groups_listing, replace=True)


def _hydra_entry() -> None:
    """Build and call the @hydra.main function; sys.argv is already `initlab <hydra args>`."""
    import hydra
    from omegaconf import DictConfig

    from initlab.config import register_configs

    register_configs()
    _register_resolvers()

    @hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")
    def hydra_main(cfg: DictConfig) -> None:
        from initlab.run import run_from_hydra

        run_from_hydra(cfg)

    hydra_main()


def _strip_run_from_completion_line() -> None:
    # Hydra's bash completion calls `initlab -sc query=bash` with the whole command line
    # in COMP_LINE ("initlab run act=re"); Hydra expects the app name then overrides.
    line = os.environ.get("COMP_LINE", "")
    words = line.split(" ")
    if len(words) > 1 and words[1] == "run":
        os.environ["COMP_LINE"] = " ".join([words[0], *words[2:]])


def _report(args: list[str], prog: str = "initlab report") -> int:
    """``initlab report|list``: one line on stderr for anything wrong, never a traceback.

    Bad input (a path that is not a record, a bad record file, a file where the report
    writes a folder, a bad option) is checked and named. Anything else is a bug: one line,
    its traceback saved to a file to report it, exit 1.
    """
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

    class OneLineParser(argparse.ArgumentParser):
        def error(self, message: str):  # argparse prints usage too: one line is enough
            print(f"{self.prog}: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
            sys.exit(2)

    listing = prog.endswith("list")
    parser = OneLineParser(
        prog=prog,
        description="List the runs and sweeps under a folder, newest first." if listing else
        "Re-render the tables, figures and diagnosis of a saved run (PATH holds summary.json), "
        "compare the jobs of a sweep (PATH holds multirun.yaml), or list the runs and "
        "sweeps under any other folder. Nothing is trained.",
    )
    parser.add_argument("path", type=Path, nargs="?" if listing else None,
                        default=Path("outputs"), help="a run, a sweep, or a folder of them")
    if not listing:
        parser.add_argument("--format", choices=FIGURE_FORMATS, default="png",
                            help="figure file format (default: png)")
        parser.add_argument("--dpi", type=dpi, default=120,
                            help=f"figure resolution, 1 to {MAX_DPI} (default: 120)")
    ns = parser.parse_args(args)
    from initlab.record import RecordError
    from initlab.report import list_path, render_path

    def action() -> None:
        if listing:
            list_path(ns.path, default="path" not in _given(args))
        else:
            render_path(ns.path, fmt=ns.format, dpi=ns.dpi)

    return _in_one_line(prog, action, f"writing the report of {ns.path}",
                        ((RecordError, 2),), lambda: _save_report_traceback(ns.path))


def _export(args: list[str], prog: str = "initlab export") -> int:
    """``initlab export FORMAT PATH [--out DIR]``: one line on stderr for anything wrong, as
    :func:`_report` does (bad input exit 2, a missing extra or an unwritable folder exit 1)."""
    import argparse

    from initlab.export import FORMATS, INSTALL_HINT

    class OneLineParser(argparse.ArgumentParser):
        def error(self, message: str):  # argparse prints usage too: one line is enough
            print(f"{self.prog}: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
            sys.exit(2)

    parser = OneLineParser(
        prog=prog,
        description="Write a run's record (PATH holds summary.json) or every job of a sweep "
        "(PATH holds multirun.yaml) as TensorBoard event files: per-epoch loss and accuracy, "
        "per-step gradient norms, weight and activation histograms, the config as hparams. "
        f"Needs the tensorboard extra: {INSTALL_HINT}",
    )
    parser.add_argument("format", metavar="FORMAT", help=f"the export format ({', '.join(FORMATS)})")
    parser.add_argument("path", metavar="PATH", type=Path, help="a run or a sweep folder")
    parser.add_argument("--out", metavar="DIR", type=Path, default=None,
                        help="where the events go (default: PATH/tensorboard; an earlier "
                        "export there is replaced)")
    if args and args[0] not in FORMATS and not args[0].startswith("-"):
        print(f"{prog}: error: unknown export format {args[0]!r} (choose from: "
              f"{', '.join(FORMATS)}); usage: {prog} tensorboard PATH [--out DIR]", file=sys.stderr)
        return 2
    ns = parser.parse_args(args)
    from initlab.export import ExportError, MissingExtra, export
    from initlab.record import RecordError

    return _in_one_line(prog, lambda: export(ns.format, ns.path, out=ns.out),
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
        for kind, status in expected:
            if isinstance(e, kind):
                print(f"{prog}: error: {_one_line(str(e))}", file=sys.stderr)
                return status
        if isinstance(e, OSError):
            print(f"{prog}: error: {e.filename or what}: {e.strerror or e}", file=sys.stderr)
            return 1
        print(f"{prog}: internal error: {_one_line(f'{type(e).__name__}: {e}')} "
              f"({save_traceback()}; please report it)", file=sys.stderr)
        return 1
    return 0


def _given(args: list[str]) -> set[str]:
    """Which of `initlab list`'s arguments the user gave ("path" when a folder is named)."""
    return {"path"} if any(not a.startswith("-") for a in args) else set()


def _save_report_traceback(path: Path, kind: str = "report") -> str:
    """Save the current traceback in the run's report_error.txt (a temporary file for an
    export, a sweep, a folder, or a run that cannot be written); returns where, or why it
    could not."""
    import tempfile
    import traceback

    from initlab.record import REPORT_ERROR_FILE, SUMMARY

    text = traceback.format_exc()
    candidates = [path / REPORT_ERROR_FILE] if kind == "report" and (path / SUMMARY).is_file() else []
    candidates.append(Path(tempfile.gettempdir()) / f"initlab-{kind}-error-{os.getpid()}.txt")
    for target in candidates:
        try:
            target.write_text(text)
            return f"traceback in {target}"
        except OSError:
            continue
    return "traceback not saved"


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
        _strip_run_from_completion_line()
        sys.argv = [prog, *argv]
        _hydra_entry()
        return 0
    if command == "run":
        return _run_command(prog, rest)
    if command == "report":
        return _report(rest)
    if command == "list":
        return _report(rest, prog="initlab list")
    if command == "export":
        return _export(rest)
    print(
        f"initlab: error: unknown command {command!r} (choose from: {', '.join(COMMANDS)}); "
        "see `initlab --help`",
        file=sys.stderr,
    )
    return 2


def _run_command(prog: str, rest: list[str]) -> int:
    """`initlab run`: a signal anywhere (composing, between sweep jobs, drawing) ends in one
    line and exit 128 + signal; during training the run's own handler stops it cleanly."""
    import signal

    from initlab.interrupts import Interrupted, raise_interrupted

    signal.signal(signal.SIGTERM, raise_interrupted)
    try:
        return _run(prog, rest)
    except (Interrupted, KeyboardInterrupt) as e:
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"initlab: interrupted by {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + signum


def _run(prog: str, rest: list[str]) -> int:
    parsed = parse_run_args(rest)
    if parsed.other_flags:  # --help, --cfg, -sc, --info ...: Hydra's own business
        sys.argv = [prog, *rest]
        _hydra_entry()
        return 0
    error = check_group_options(parsed.overrides)
    if not error and not parsed.multirun:
        error, app, cfg = compose_single_run(parsed)
        if not error:
            try:
                run_single(app, cfg, parsed.config_name)
            except OSError as e:  # Hydra's own files (.hydra/) on a full or vanished disk
                where = e.filename or f"the run folder {cfg.hydra.run.dir}"
                print(f"initlab run: error: cannot write {where}: {e.strerror or e}",
                      file=sys.stderr)
                return 2
            return 0
    elif not error:
        app = _hydra_app()
        error = compose_sweep(app, parsed)
        if not error:
            return run_sweep(app, parsed)
    print(f"initlab run: error: {error}", file=sys.stderr)
    return 2


def run_sweep(app, parsed: RunArgs) -> int:
    """Hydra's own multirun (sweeper, launcher, callbacks, each job's folder) on the app
    the checks composed with; a failed job has printed its one line, so the sweep adds none."""
    from initlab.run import JobFailed, run_from_hydra

    try:
        with _without_hydras_job_error_lines():
            app.multirun(parsed.config_name, run_from_hydra,
                         [*parsed.overrides, MULTIRUN_OVERRIDE], with_log_configuration=True)
    except JobFailed:
        return 1
    except Exception as e:  # the sweeper or launcher itself (a value it cannot compose, ...)
        if not _remove_if_no_job_started(parsed.sweep_dir):
            return 1  # jobs ran: the one that failed has said why in its own line
        print(f"initlab run: error: {_one_line(f'{e}; {e.__cause__}' if e.__cause__ else str(e))}",
              file=sys.stderr)
        return 2  # refused before any job: bad input
    return 0


def _remove_if_no_job_started(sweep_dir: str | None) -> bool:
    """A sweep refused by Hydra's sweeper before any job ran leaves no folder behind;
    returns whether none had started."""
    from initlab.report.compare import find_job_dirs

    path = Path(sweep_dir) if sweep_dir else None
    if path and path.is_dir() and find_job_dirs(path):
        return False
    if path and path.is_dir():
        import shutil

        shutil.rmtree(path)
    return True


class _without_hydras_job_error_lines:
    """Hydra writes "Error executing job with overrides: [...]" to stderr for every failed
    job; each initlab job has already said what failed, in one line, so drop Hydra's."""

    def __init__(self):
        self._stderr = sys.stderr

    def write(self, text: str) -> int:
        if text.startswith("Error executing job with overrides:"):
            return len(text)
        return self._stderr.write(text)

    def __getattr__(self, name):
        return getattr(self._stderr, name)

    def __enter__(self):
        sys.stderr = self
        return self

    def __exit__(self, *exc) -> None:
        sys.stderr = self._stderr


def console_main() -> None:
    """The ``initlab`` command: :func:`main`, then a quick exit.

    Tearing down an interpreter that imported torch, Hydra and matplotlib takes ~0.6 s
    (measured on 2 cores after a 200-job sweep: module dicts, torch's thread pools), paid
    by every command. Every file initlab writes is closed by then, so once the exit
    handlers have run (Hydra's logging flush among them) and stdout/stderr are flushed,
    the process ends at once with main's exit status. An exception other than SystemExit
    leaves the usual way, and so does a process with threads still running (a parallel
    launcher's pool shuts down in the interpreter's own order: threads, then exit handlers).
    """
    import atexit
    import threading

    try:
        code = main()
    except SystemExit as e:
        code = e.code
    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        sys.exit(code)
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message"), as the interpreter does it
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`initlab list | head`)
            pass
    os._exit(code)


if __name__ == "__main__":
    console_main()
