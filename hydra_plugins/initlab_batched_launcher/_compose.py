"""Cheap per-job composition for the batched launcher, and each job's ``.hydra/`` files.

Hydra's basic launcher composes every job from scratch (~0.1-0.25 s a job). Only overrides
of config GROUPS (``act=relu``) and of ``hydra.*`` change what is composed; the others
(``seed=1``) are assignments Hydra applies after composing. So a :class:`Composition` is
built once per distinct set of the former, and each job applies the latter to a copy of it
(:func:`apply_overrides`, as Hydra's config loader does; tests/test_batched_launcher.py
compares the two), then gets what Hydra's sweep sets per job (``hydra.job.num``/``id``,
``hydra.overrides.task``, ``hydra.job.override_dirname``, ``hydra.runtime.output_dir``).

A job whose overrides all set existing plain values of a composition without
interpolations skips even the copy (~2 ms a job): its config is an
:class:`initlab.config.ConfigView` of the composition's plain values with the job's in,
each distinct override line coerced once by :func:`apply_overrides` on a scratch copy (so
its errors and types are the DictConfig path's).

The ``.hydra/`` files are rendered from YAML templates: the shared text dumped once with a
slot per value a job sets, each job's values dumped alone into their slots. The first job
of every template is checked against OmegaConf's own dump; a template that would differ is
dropped and its jobs are dumped whole, as Hydra does.
"""

import copy
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Optional

import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType, ValueType
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from initlab.preflight import one_line
from initlab.view import ConfigView

DEFAULT_SUBDIR = "${hydra.job.num}"
_SLOT = "__initlab_slot_{}__"
_UNSEEN = object()
_PLAIN_TYPES = (int, float, str, bool, type(None))
# Per job, what Hydra's sweep sets in the hydra node: (path under hydra, slot name).
_HYDRA_SLOTS = (("job", "num"), ("job", "id"), ("job", "override_dirname"), ("overrides", "task"),
                ("runtime", "output_dir"))


# Strings YAML 1.1 reads as booleans: OmegaConf quotes them, and numbers written as strings.
_YAML_BOOLS = frozenset("y Y yes Yes YES n N no No NO true True TRUE false False FALSE "
                        "on On ON off Off OFF".split())


def _reads_as_another_type(text: str) -> bool:
    if text in _YAML_BOOLS:
        return True
    try:
        float(text)  # whatever int() reads, float() reads too
        return True
    except ValueError:
        return False


class _Dumper(yaml.Dumper):
    """The dumper of ``OmegaConf.to_yaml``, built on PyYAML's public API: a string that reads
    as a bool, int or float is quoted (tests/test_batched_launcher.py checks the two agree)."""


_Dumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="'" if _reads_as_another_type(text) else None))


def dump(value: Any) -> str:
    """YAML text exactly as ``OmegaConf.to_yaml`` writes it (what Hydra's run_job writes)."""
    return yaml.dump(value, default_flow_style=False, allow_unicode=True, sort_keys=False,
                     Dumper=_Dumper)


# A string of these characters, starting with one of the first set, is written plain
# (unquoted) by YAML unless it reads as another type ("1e5", "true", "null"): then quoted.
_PLAIN_STR = re.compile(r"[A-Za-z0-9_/][A-Za-z0-9_./=+-]*\Z")
# Outside a flow collection a comma is no indicator: a job's override_dirname
# ("act=relu,seed=3") is written plain too.
_BLOCK_PLAIN_STR = re.compile(r"[A-Za-z0-9_/][A-Za-z0-9_./=+,-]*\Z")
_STR_TAG = "tag:yaml.org,2002:str"
_RESOLVER = _Dumper(None)


def _flow(value: Any) -> Optional[str]:
    """One value as a one-line YAML flow node for a template slot (None if it needs lines).

    Ints and plain strings (a job number, its folder, ``seed=3``) are written directly, as
    the dumper would write them (tests/test_batched_launcher.py checks against it): a sweep
    of 10,000 jobs fills 60,000 slots."""
    if type(value) is int:
        return str(value)
    if type(value) is str and _is_plain_str(value, _BLOCK_PLAIN_STR):
        return value
    if type(value) is list and all(type(v) is str and _is_plain_str(v) for v in value):
        return "[" + ", ".join(value) + "]"
    text = yaml.dump(value, default_flow_style=True, allow_unicode=True, sort_keys=False,
                     width=math.inf, Dumper=_Dumper).rstrip("\n")
    if text.endswith("\n..."):
        text = text[: -len("\n...")]
    return None if "\n" in text else text


def dump_str_list(items: list[str]) -> str:
    """:func:`dump` of a list of strings (``overrides.yaml``), written directly when every
    one is plain."""
    if items and all(type(v) is str and _is_plain_str(v) for v in items):
        return "".join([f"- {v}\n" for v in items])
    return dump(items)


def _is_plain_str(text: str, pattern: re.Pattern = _PLAIN_STR) -> bool:
    """Would ``text`` be written plain (in a flow collection; ``pattern`` _BLOCK_PLAIN_STR:
    as a block value): does it read back as a string, to YAML (not null, a date...) and to
    OmegaConf's dumper (which quotes what looks like a bool, int or float)?"""
    return (pattern.match(text) is not None
            and not _reads_as_another_type(text)
            and _RESOLVER.resolve(yaml.ScalarNode, text, (True, False)) == _STR_TAG)


def _same(a: Any, b: Any) -> bool:
    """Equal containers, NaN equal to NaN (a job may well start its weights at NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _parent(cfg: Any, key: str) -> tuple[Any, str]:
    """(the node holding a dotted key, or None; the key's last part)."""
    parent_key, _, leaf = key.rpartition(".")
    return (OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg), leaf


def _is_value(cfg: DictConfig, key: str) -> bool:
    """Is there a value (not a container, an interpolation or ``???``) at this dotted key of
    dicts?"""
    parent, leaf = _parent(cfg, key)
    return (isinstance(parent, DictConfig) and leaf in parent and not OmegaConf.is_missing(parent, leaf)
            and not OmegaConf.is_interpolation(parent, leaf)
            and not isinstance(parent[leaf], (DictConfig, ListConfig)))


def _unresolved(cfg: Any, key: str) -> Any:
    """The value at a dotted key as ``OmegaConf.to_container(resolve=False, enum_to_str=True)``
    has it (_UNSEEN when the path is not there)."""
    parent, leaf = _parent(cfg, key)
    if isinstance(parent, ListConfig) and leaf.isdigit() and int(leaf) < len(parent):
        leaf = int(leaf)
    elif not isinstance(parent, DictConfig) or leaf not in parent:
        return _UNSEEN
    return OmegaConf.to_container(parent, resolve=False, enum_to_str=True)[leaf]


def _container(cfg: Any) -> Any:
    """A job's config as ``OmegaConf.to_container(resolve=False, enum_to_str=True)`` has it."""
    if isinstance(cfg, ConfigView):
        return cfg.to_container()
    return OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)


def _view_value(view: ConfigView, key: str) -> Any:
    node: Any = view
    for part in key.split("."):
        node = node[part]
    return node.to_container() if isinstance(node, ConfigView) else node


def _set_path(container: Any, key: str, value: Any) -> bool:
    parts = key.split(".")
    for part in parts[:-1]:
        container = container[int(part)] if isinstance(container, list) else container.get(part)
        if not isinstance(container, (dict, list)):
            return False
    last = parts[-1]
    if isinstance(container, list):
        container[int(last)] = value
    elif last in container:
        container[last] = value
    else:
        return False
    return True


# `key=<int>` as Hydra's grammar reads it (a dotted key of plain names, a decimal int
# without leading zeros or underscores); tests/test_batched_launcher.py checks it against
# Hydra's parser.
_INT_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)=(-?(?:0|[1-9][0-9]*))\Z")


def parse_int_assignment(line: str) -> Optional[Override]:
    """The Override Hydra's parser makes of ``key=<int>`` (not under hydra.); None for any
    other line."""
    m = _INT_ASSIGNMENT.match(line)
    if m is None or m.group(1) == "hydra" or m.group(1).startswith("hydra."):
        return None
    return Override(type=OverrideType.CHANGE, key_or_group=m.group(1), value_type=ValueType.ELEMENT,
                    _value=int(m.group(2)), package=None, input_line=line)


def _plain_value(plain: Optional[dict], key: str) -> Any:
    node: Any = plain
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _UNSEEN
        node = node[part]
    return node


class Template:
    """YAML text with one slot per value that differs between the jobs that share it."""

    def __init__(self, container: dict, paths: list[str]):
        slots = [_SLOT.format(i) for i in range(len(paths))]
        filled = copy.deepcopy(container)
        ok = all(_set_path(filled, p, s) for p, s in zip(paths, slots))
        self.text = dump(filled) if ok else ""
        # Each slot once, as a whole value: else this template is not used.
        self.usable = ok and all(len(re.findall(rf"(?<=[ \-]){s}$", self.text, re.M)) == 1
                                 for s in slots)
        self.slots = slots
        self.checked = False

    def render(self, values: list[Any]) -> Optional[str]:
        if not self.usable:
            return None
        texts = [_flow(v) for v in values]
        if any(t is None for t in texts):
            return None
        out = self.text
        for slot, text in zip(self.slots, texts):
            out = out.replace(slot, text, 1)
        return out

    def check(self, text: str, expected: Any) -> bool:
        """The first text rendered must load to what OmegaConf would have written."""
        if not self.checked:
            self.checked = True
            self.usable = _same(OmegaConf.to_container(OmegaConf.create(text), resolve=False), expected)
        return self.usable


@dataclass
class Composition:
    """One Hydra composition, shared by every job with the same group and hydra overrides."""

    full: DictConfig  # as load_sweep_config returns it, hydra node included
    task: DictConfig  # the same without its hydra node (what the task function gets)
    sweep_dir: str
    subdir: str  # hydra.sweep.subdir, unresolved
    hydra_template: Template
    config_templates: dict[tuple, Optional[Template]] = field(default_factory=dict)
    # The task config as plain values when it has no interpolations or missing values
    # (None: every job takes the DictConfig path); per override line, (dotted key, coerced value),
    # or None when the line is not a plain assignment of an existing value.
    plain: Optional[dict] = None
    line_values: dict[str, Any] = field(default_factory=dict)
    scratch: Optional[DictConfig] = None

    # Read once per composition, not once per job (a DictConfig lookup costs ~10 us a key).
    @cached_property
    def job_name(self) -> str:
        return str(self.full.hydra.job.name)

    @cached_property
    def override_dirname_config(self) -> tuple[frozenset, str, str]:
        """hydra.job.config.override_dirname: (exclude_keys, item_sep, kv_sep)."""
        c = self.full.hydra.job.config.override_dirname
        return frozenset(c.exclude_keys), str(c.item_sep), str(c.kv_sep)

    @cached_property
    def log_file(self) -> bool:
        return "file" in (OmegaConf.select(self.full, "hydra.job_logging.handlers") or {})


@dataclass
class PreparedJob:
    """A job of the sweep: its overrides, composed config and folder (or why it has none)."""

    idx: int
    overrides: list[str]  # hydra.overrides.task: the job's non-hydra overrides, in order
    out_dir: Path
    cfg: Any = None  # DictConfig, or a ConfigView (see the module docstring)
    composition: Optional[Composition] = None
    values: list[Override] = field(default_factory=list)
    override_dirname: str = ""
    error: Optional[str] = None
    device: str = "cpu"
    key: Any = None  # (device, initlab.engine.group_key): equal keys train stacked
    alone: Optional[str] = None  # why this job trains alone (it has no stacked form)

    @property
    def label(self) -> str:
        return f"job {self.idx} " + (" ".join(self.overrides) or "(defaults)")

    def dict_config(self) -> DictConfig:
        """The job's task config as a DictConfig (what Hydra hands the task function)."""
        assert self.composition is not None
        cfg = copy.deepcopy(self.composition.task)
        apply_overrides(self.values, cfg)
        return cfg

    def full_config(self) -> DictConfig:
        """The job's whole config, hydra node included, as Hydra's basic launcher builds it
        (slow: only for callbacks that ask for it and unusual hydra.sweep.subdir values)."""
        assert self.composition is not None
        full = copy.deepcopy(self.composition.full)
        apply_overrides(self.values, full)
        with read_write(full.hydra), open_dict(full.hydra):
            full.hydra.job.id = self.idx
            full.hydra.job.num = self.idx
            full.hydra.overrides.task = list(self.overrides)
            full.hydra.job.override_dirname = self.override_dirname
            full.hydra.runtime.output_dir = str(self.out_dir)
        return full


class Composer:
    """Builds each job of a sweep from the few compositions its overrides need."""

    def __init__(self, config_loader: Any, master: DictConfig, groups: set[str]):
        self.loader = config_loader
        self.master = master
        self.groups = groups
        self.parser = OverridesParser.create()
        self._parsed: dict[str, Override] = {}
        self.compositions: dict[tuple[str, ...], Composition] = {}

    def parse(self, lines: list[str]) -> list[Override]:
        # Sweep values repeat from job to job; Hydra's parser costs ~0.2-0.7 ms a line, and
        # `seed=range(0,100000)` makes 100,000 different lines: `key=<int>` is read here.
        new = list(dict.fromkeys(x for x in lines if x not in self._parsed))
        if new:
            slow = []
            for line in new:
                o = parse_int_assignment(line)
                if o is None:
                    slow.append(line)
                else:
                    self._parsed[line] = o
            if slow:
                self._parsed.update(zip(slow, self.parser.parse_overrides(slow)))
        return [self._parsed[x] for x in lines]

    def is_composed(self, o: Override) -> bool:
        """Does this override change what Hydra composes (a group choice, hydra.*)?"""
        key = o.key_or_group
        return o.is_hydra_override() or o.package is not None or key in self.groups or "/" in key

    def composition(self, lines: tuple[str, ...]) -> Composition:
        if lines not in self.compositions:
            full = self.loader.load_sweep_config(self.master, list(lines))
            task = copy.deepcopy(full)
            with read_write(task), open_dict(task):
                del task["hydra"]
            hydra = {"hydra": OmegaConf.to_container(full.hydra, resolve=False, enum_to_str=True)}
            unresolved = OmegaConf.to_container(task, resolve=False, enum_to_str=True)
            plain = OmegaConf.to_container(task, resolve=True, enum_to_str=True)
            if not _same(unresolved, plain) or OmegaConf.missing_keys(task):
                plain = None
            self.compositions[lines] = Composition(plain=plain,
                full=full, task=task, sweep_dir=str(OmegaConf.select(full, "hydra.sweep.dir")),
                subdir=str(_unresolved(full, "hydra.sweep.subdir")),
                hydra_template=Template(hydra, [".".join(("hydra", *p)) for p in _HYDRA_SLOTS]))
        return self.compositions[lines]

    def prepare(self, idx: int, overrides: list[str]) -> PreparedJob:
        """Job ``idx`` composed and placed; a job Hydra cannot compose carries its error."""
        parsed = self.parse(list(overrides))
        task_overrides = [o for o in parsed if not o.is_hydra_override()]
        out_dir = Path(os.path.abspath(os.path.join(str(self.master.hydra.sweep.dir), str(idx))))
        job = PreparedJob(idx, [str(o.input_line) for o in task_overrides], out_dir)
        try:
            comp = self.composition(tuple(str(o.input_line) for o in parsed if self.is_composed(o)))
            job.composition = comp
            job.values = [o for o in parsed if not self.is_composed(o)]
            job.cfg = self._plain_config(comp, job.values)
            if job.cfg is None:
                job.cfg = job.dict_config()
            # hydra.job.override_dirname, as Hydra builds it from hydra.job.config.override_dirname.
            exclude, item_sep, kv_sep = comp.override_dirname_config
            lines = sorted(str(o.input_line) for o in task_overrides if o.key_or_group not in exclude)
            job.override_dirname = item_sep.join(lines).replace("=", kv_sep)
        except Exception as e:  # noqa: BLE001 - Hydra/OmegaConf composition errors, in words
            job.error = one_line(f"{e}; {e.__cause__}" if e.__cause__ else str(e))
            return job
        try:
            if comp.subdir == DEFAULT_SUBDIR:
                subdir, sweep_dir = str(idx), comp.sweep_dir
            else:  # resolved in the job's own config, as Hydra's run_job does
                full = job.full_config()
                with hydra_config(full):
                    subdir = str(OmegaConf.select(full, "hydra.sweep.subdir"))
                    sweep_dir = str(OmegaConf.select(full, "hydra.sweep.dir"))
            job.out_dir = Path(os.path.abspath(os.path.join(sweep_dir, subdir)))
        except Exception as e:  # noqa: BLE001 - an interpolation that does not resolve
            job.error = one_line(f"hydra.sweep.subdir: {e}")
        return job

    def _plain_config(self, comp: Composition, values: list[Override]) -> Optional[ConfigView]:
        """The job's config as a ConfigView, or None when it needs the DictConfig path."""
        if comp.plain is None:
            return None
        view = ConfigView(comp.plain)
        for o in values:
            hit = comp.line_values.get(o.input_line, _UNSEEN)
            if hit is _UNSEEN:
                hit = comp.line_values[o.input_line] = self._line_value(comp, o)
            if hit is None:
                return None
            view = view.updated(*hit)
        return view

    @staticmethod
    def _line_value(comp: Composition, o: Override) -> Optional[tuple[str, Any]]:
        """(dotted key, value) of a plain assignment to an existing plain value, coerced as Hydra
        coerces it (applied to a scratch copy of the composition); None for anything else,
        including a line Hydra rejects (the DictConfig path then raises Hydra's error)."""
        key = o.key_or_group
        if o.type != OverrideType.CHANGE or o.is_sweep_override() or not isinstance(key, str):
            return None
        value = o.value()
        if type(value) is int and type(_plain_value(comp.plain, key)) is int:
            # An int onto a plain int (no interpolation in a plain composition): OmegaConf
            # keeps it as it is, whether the node is typed int or Any (`seed=3`).
            return key, value
        if not _is_value(comp.task, key):
            return None
        if comp.scratch is None:
            comp.scratch = copy.deepcopy(comp.task)
        try:
            apply_overrides([o], comp.scratch)
        except Exception:  # noqa: BLE001 - raised again, in Hydra's words, on the other path
            return None
        if not _is_value(comp.scratch, key):
            return None
        value = OmegaConf.select(comp.scratch, key)
        return (key, value) if type(value) in _PLAIN_TYPES else None

    # ------------------------------------------------------------------ .hydra/ files
    def hydra_files(self, job: PreparedJob) -> dict[str, str]:
        """``config.yaml``, ``hydra.yaml`` and ``overrides.yaml`` as Hydra's run_job writes them."""
        comp = job.composition
        assert comp is not None and job.cfg is not None
        files = {"config.yaml": self._config_yaml(job, comp)}
        values = [job.idx, str(job.idx), job.override_dirname, list(job.overrides), str(job.out_dir)]
        text = comp.hydra_template.render(values)
        if text is None or not comp.hydra_template.checked:
            expected = {"hydra": OmegaConf.to_container(job.full_config().hydra, resolve=False,
                                                        enum_to_str=True)}
            if text is None or not comp.hydra_template.check(text, expected):
                text = dump(expected)
        files["hydra.yaml"] = text
        files["overrides.yaml"] = dump_str_list(list(job.overrides))
        return files

    def _config_yaml(self, job: PreparedJob, comp: Composition) -> str:
        cfg = job.cfg
        keys = tuple(str(o.key_or_group) for o in job.values)
        if all(o.type == OverrideType.CHANGE for o in job.values) and len(set(keys)) == len(keys):
            if keys not in comp.config_templates:  # None: a key the composition lacks
                present = all(_unresolved(comp.task, k) is not _UNSEEN for k in keys)
                comp.config_templates[keys] = Template(
                    OmegaConf.to_container(comp.task, resolve=False, enum_to_str=True),
                    list(keys)) if present else None
            template = comp.config_templates[keys]
            if template is not None:
                if isinstance(cfg, ConfigView):
                    text = template.render([_view_value(cfg, k) for k in keys])
                else:
                    values = [_unresolved(cfg, k) for k in keys]
                    text = None if _UNSEEN in values else template.render(values)
                if text is not None and (template.checked or template.check(text, _container(cfg))):
                    return text
        return dump(_container(cfg))


@contextmanager
def hydra_config(cfg: DictConfig) -> Iterator[None]:
    """HydraConfig set to ``cfg`` (as run_job sets it for a job), restored after."""
    previous = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(cfg)
    try:
        yield
    finally:
        HydraConfig.instance().cfg = previous


def write_hydra_files(job: PreparedJob, files: dict[str, str], output_subdir: Optional[str]) -> None:
    """The job's folder with its ``.hydra/`` files (and the empty log Hydra's logging leaves)."""
    job.out_dir.mkdir(parents=True, exist_ok=True)
    if output_subdir is not None:
        hydra_dir = job.out_dir / output_subdir
        hydra_dir.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            with open(hydra_dir / name, "w", encoding="utf-8") as f:
                f.write(text)
    if job.composition is not None and job.composition.log_file:
        (job.out_dir / f"{job.composition.job_name}.log").touch()


def apply_overrides(overrides: list[Override], cfg: DictConfig) -> None:
    """Apply value overrides (``key=v``, ``+key=v``, ``++key=v``, ``~key``) to a composed
    config as Hydra's config loader applies them after composing, with its errors."""
    for o in overrides:
        key, value, line = o.key_or_group, o.value(), o.input_line
        if o.package is not None:
            raise ConfigCompositionException(
                f"Override {line} looks like a config group override, but config group "
                f"'{key}' does not exist.")
        try:
            if o.is_delete():
                old = OmegaConf.select(cfg, key, throw_on_missing=False)
                if old is None:
                    raise ConfigCompositionException(
                        f"Could not delete from config. '{key}' does not exist.")
                if value is not None and value != old:
                    raise ConfigCompositionException(
                        f"Could not delete from config. The value of '{key}' is {old} and not {value}.")
                parent, _, leaf = key.rpartition(".")
                with open_dict(cfg):
                    del (OmegaConf.select(cfg, parent) if parent else cfg)[leaf]
            elif o.is_add():
                if OmegaConf.select(cfg, key, throw_on_missing=False) is not None and \
                        not isinstance(value, (dict, list)):
                    raise ConfigCompositionException(
                        f"Could not append to config. An item is already at '{key}'.\n"
                        f"Either remove + prefix: '{line[1:]}'\n"
                        f"Or add a second + to add or override '{key}': '+{line}'\n")
                OmegaConf.update(cfg, key, value, merge=True, force_add=True)
            elif o.is_force_add():
                OmegaConf.update(cfg, key, value, merge=True, force_add=True)
            else:
                try:
                    OmegaConf.update(cfg, key, value, merge=True)
                except (ConfigAttributeError, ConfigKeyError) as e:
                    raise ConfigCompositionException(
                        f"Could not override '{key}'.\nTo append to your config use +{line}") from e
        except OmegaConfBaseException as e:
            raise ConfigCompositionException(f"Error merging override {line}") from e
