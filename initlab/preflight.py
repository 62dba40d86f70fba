"""What a run or a sweep must pass before it writes, its folder's claim, and bad input in
one line.

:class:`Preflight` is a Hydra callback (conf/config.yaml), so its checks run on the config
Hydra composed, whatever flags composed it. A run is checked as a whole (validate, budget,
device); a sweep by its group options and its first job. Then the folder is claimed
(:func:`claim`) and checked for a record. A refusal is a :class:`PreflightError`, one line;
:func:`explain` turns Hydra's composition errors into one line that names the fix.
"""

import atexit
import os
import re
import sys
from contextlib import suppress
from dataclasses import fields
from pathlib import Path
from typing import Any

from hydra.errors import MissingConfigException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

# Lines of Hydra/OmegaConf errors that say where, not what; dropped from the one-line form.
_NOISE_PREFIXES = ("reference_type=", "object_type=", "provider=", "Config search path",
                   "full_key:")


class PreflightError(SystemExit):
    """Bad input in one line (``message``), exit status 2. An exit: Hydra turns a callback's
    Exception into a warning and runs on."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


def one_line(message: str) -> str:
    lines = [line.strip() for line in str(message).splitlines()]
    return "; ".join(x for x in lines if x and not x.startswith(_NOISE_PREFIXES))


class Preflight(Callback):
    folder: Path | None = None  # this process's folder: the CLI names it if .hydra/ fails

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _checked(check_run, config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _checked(check_sweep, config)


def _checked(check, config: DictConfig) -> None:
    try:  # a check that breaks stops the run: Hydra would only warn and run it unchecked
        check(config)
    except Exception as e:  # noqa: BLE001
        raise PreflightError(f"the checks before the run failed: {type(e).__name__}: "
                             f"{one_line(str(e))}") from None


def check_run(cfg: DictConfig) -> None:
    """The composed config of a single run, as the run will check it, and its folder."""
    from initlab.budget import check_budget
    from initlab.config import ConfigError, validate
    from initlab.run import resolve_device

    try:
        validate(cfg)
        check_budget(cfg, Path(str(OmegaConf.select(cfg, "hydra.run.dir"))))
        if cfg.trainer.device == "cuda":  # torch only for this check, not for every run
            resolve_device("cuda")
    except ConfigError as e:
        raise PreflightError(str(e)) from None
    except Exception as e:  # a value OmegaConf cannot resolve or convert
        raise PreflightError(explain(e)) from None
    prepare_output_dir(cfg, "hydra.run.dir")


def check_sweep(cfg: DictConfig) -> None:
    """A sweep's group options (every value), its first job (a misspelled key is wrong for
    every job, while a bad value fails only its own job), and its folder."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra_plugins.initlab_batched_launcher.sweeper import expand, expanding_sweeper
    from initlab.budget import check_machine
    from initlab.config import ConfigError, validate

    params = cfg.hydra.sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(cfg.hydra.overrides.task)
    try:
        parsed = OverridesParser.create().parse_overrides(arguments)
    except Exception as e:
        raise PreflightError(explain(e)) from None
    loader = GlobalHydra.instance().config_loader()
    groups = set(loader.list_groups(""))
    for o in parsed:
        if o.key_or_group in groups and o.is_sweep_override() and o.is_discrete_sweep():
            options = loader.get_group_options(o.key_or_group)
            for value in o.sweep_string_iterator():
                if value != "null" and value not in options:
                    raise PreflightError(_not_an_option(o.key_or_group, value, options))
    if expanding_sweeper(cfg.hydra.sweeper.get("_target_")):
        swept = {o.key_or_group for o in parsed if o.is_sweep_override()}
        config_name, first = cfg.hydra.job.config_name, []
        try:
            first = expand(arguments, loader)[0]
            first_cfg = compose(config_name, overrides=first)
            validate(first_cfg)
            check_machine(first_cfg)
        except ConfigError as e:  # refused if every job has it; a swept value fails its own jobs
            key = str(e).split(" ", 1)[0].split("=", 1)[0]
            if not any(key == k or key.startswith(f"{k}.") for k in swept):
                raise PreflightError(str(e)) from None
        except Exception as e:  # a key or type Hydra cannot compose: every job would fail
            raise PreflightError(explain(e, config_name, first)) from None
    prepare_output_dir(cfg, "hydra.sweep.dir")


def prepare_output_dir(cfg: DictConfig, key: str) -> None:
    """Claim the folder, then refuse it if it holds a record of its own (unless
    ``overwrite=true``: then only that record's files go) or other records below it.
    Claimed first, checked second: two runs cannot both pass."""
    try:  # Hydra's `now` resolver caches its value: the run gets this very folder
        text = str(OmegaConf.select(cfg, key))
    except Exception as e:
        raise PreflightError(f"{key} cannot be resolved: {one_line(str(e))}") from None
    if not text.strip():
        raise PreflightError(f"{key} is empty; name the folder the record goes to")
    path = Preflight.folder = Path(text)
    if path.exists() and not path.is_dir():
        raise PreflightError(f"{key}={path} is a file, not a folder")
    made: list[Path] = []
    try:
        made = claim(path)
        old, paths, folders = _own_record(path, key)
        if old and not cfg.get("overwrite", False):
            raise PreflightError(f"{path} already holds {old}; choose another {key}, or add "
                                 "overwrite=true to replace it (only its own files)")
        _remove(paths, folders)
    except (OSError, PreflightError) as e:
        release(made)
        raise e if isinstance(e, PreflightError) else PreflightError(
            f"cannot write to {path}: {e.strerror or e}") from None


LOCK = ".initlab.lock"  # in the claimed folder; its lock (not the file) is the claim
_held: dict[str, int] = {}  # folder -> the open lock file this process holds


def claim(path: Path) -> list[Path]:
    """Make ``path`` (returns the folders made) and lock its LOCK file for the rest of this
    process (the kernel drops the lock however the process ends: no stale claim after a
    kill -9). A folder another process holds is refused, naming its pid (in the file)."""
    import fcntl

    missing = [p for p in [path, *path.parents] if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for held in list(_held):  # one run or sweep per process: an earlier claim is done
        release(None, held)
    while True:
        fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").split()
            os.close(fd)
            raise PreflightError(f"{path} is being written by another initlab run or sweep (pid "
                                 f"{holder[0] if holder else '?'}); choose another folder, or "
                                 "wait for it to end") from None
        except OSError as e:  # a file system without flock (some NFS mounts): go on unlocked
            import errno

            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                os.close(fd)
                raise
            print(f"initlab: warning: {path} cannot be locked here ({e.strerror}); two runs into "
                  "it at once would not be kept apart", file=sys.stderr)
        try:  # the file locked is still the folder's (not one a finishing claim just removed)
            if os.fstat(fd).st_ino == os.stat(path / LOCK).st_ino:
                break
        except FileNotFoundError:
            path.mkdir(parents=True, exist_ok=True)
        os.close(fd)
    from initlab.record import process_identity

    os.ftruncate(fd, 0)
    os.write(fd, " ".join(map(str, process_identity().values())).encode() + b"\n")
    _held[str(path)] = fd
    atexit.register(_remove_unused, missing)  # bad input found later leaves no empty folder
    return missing


def _remove_unused(made: list[Path]) -> None:
    for p in made:  # deepest first
        with suppress(OSError):
            if set(os.listdir(p)) <= {LOCK}:
                (p / LOCK).unlink(missing_ok=True)
                p.rmdir()


def release(made: list[Path] | None, folder: str | None = None) -> None:
    """Drop this process's claim; remove the folders the claim made (``made``), if empty."""
    fd = _held.pop(folder or str(Preflight.folder), None)
    _remove_unused(made or [])  # while the lock is held: no one claims a file about to go
    if fd is not None:
        os.close(fd)


def _own_record(path: Path, key: str) -> tuple[str, list[Path], list[Path]]:
    """What record of its own ``path`` holds ("": none), its files, and its job folders;
    refused if it has none but other records below it (taking it would hide them)."""
    from initlab.record import RECORD_PATHS, SUMMARY, describe_status, read_summary
    from initlab.report.compare import (
        COMPARED_FILE,
        MULTIRUN_FILE,
        NOT_JOB_DIRS,
        SWEEP_FILES,
        find_job_dirs,
        sweep_jobs,
    )

    sweep = key == "hydra.sweep.dir"
    own = path / (MULTIRUN_FILE if sweep else SUMMARY)
    inside = next((p for p in path.parents if (p / SUMMARY).exists()), None)
    if inside is not None:
        raise PreflightError(f"{path} is inside the run record {inside}; choose another {key}")
    for marker, what in ((SUMMARY if sweep else MULTIRUN_FILE, "sweep" if not sweep else "run record"),
                         (COMPARED_FILE, "comparison (initlab compare)")):
        if not own.exists() and (path / marker).exists():  # not this kind's: overwrite never takes it
            raise PreflightError(f"{path} holds a {what}, which a {'sweep' if sweep else 'run'} "
                                 f"cannot replace; choose another {key}")
    others = [] if own.exists() else find_job_dirs(path)
    if others:
        names = ", ".join(map(str, others[:3])) + (", ..." if len(others) > 3 else "")
        raise PreflightError(f"{path} holds {len(others)} other record{'s' * (len(others) != 1)}"
                             f" below it ({names}); choose another {key}")
    if not own.exists():
        return "", [], []
    if own.name == SUMMARY:
        try:
            what = f"a run record ({describe_status(read_summary(path))})"
        except Exception:  # noqa: BLE001 - a damaged record is still a record
            what = f"a run record ({SUMMARY})"
        return what, [path / name for name in RECORD_PATHS], []
    # Its own jobs (by multirun.yaml), folders right below it: never a record deeper down.
    jobs = [s.job_dir for s in sweep_jobs(path) if s.job_dir and s.job_dir.parent == path]
    return (f"a sweep ({MULTIRUN_FILE} and {len(jobs)} job folder{'s' * (len(jobs) != 1)})",
            [path / MULTIRUN_FILE, *(path / d for d in (*NOT_JOB_DIRS, *SWEEP_FILES)),
             *(job / name for job in jobs for name in RECORD_PATHS)], jobs)


def _remove(paths: list[Path], folders: list[Path]) -> None:
    """Remove ``paths``, then each of ``folders`` left empty (one holding anything else stays)."""
    import shutil

    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    for folder in folders:
        with suppress(OSError):
            folder.rmdir()


def _not_an_option(group: str, value: str, options: list[str]) -> str:
    extra = ""
    if group == "hydra/launcher" and value.startswith(("joblib", "submitit")):
        extra = "; Hydra's joblib and submitit launchers come with pip install -e '.[launchers]'"
    return f"{group}={value} is not an option of '{group}' (choose from: {', '.join(options)}){extra}"


def explain(error: BaseException, config_name: str = "config",
            overrides: list[str] | None = None) -> str:
    """One line for an error of Hydra or OmegaConf, naming the fix where it can."""
    if isinstance(error, MissingConfigException) and error.options and error.missing_cfg_file:
        group, _, value = error.missing_cfg_file.rpartition("/")
        return _not_an_option(group, value, list(error.options))
    cause = error.__cause__
    message = one_line(f"{error}; {cause}" if cause and str(cause) not in str(error) else str(error))
    return _unknown_key(message, config_name, overrides or []) or message


def _unknown_key(message: str, config_name: str, overrides: list[str]) -> str | None:
    """For a key the config lacks, Hydra suggests `+key=value` (a key nothing reads): say
    instead which keys there are, and which option has this one."""
    from initlab.config import OPTION_SCHEMAS

    match = re.search(r"Could not override '([\w.]+)'", message)
    if not match:
        return None
    dotted = match.group(1)
    parent, _, key = dotted.rpartition(".")
    try:  # only on this error path is the config composed a second time
        cfg = _compose(config_name, [o for o in overrides if not o.startswith(f"{dotted}=")])
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


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    """Hydra's composition through its public API, inside a running app or outside one."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(config_name, overrides=overrides)
    with initialize_config_module("initlab.conf", version_base="1.3"):
        return compose(config_name, overrides=overrides)
