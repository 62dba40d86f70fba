"""Configuration schemas, their ConfigStore registration, and cross-field checks.

Every config group has a dataclass schema (those of the act, init and data options live
with their specs in :mod:`initlab.options`); each YAML option under ``conf/`` lists
its schema first in its defaults, so a misspelled key or a wrong type fails while Hydra
composes the config, before any code runs. Checks Hydra cannot express (ranges, a split
larger than the data set, a device that is not there) live in :func:`validate`, which
raises :class:`ConfigError` with one line that names the valid range or choices.

This module must not import torch: ``initlab run --help`` and ``--cfg job`` load it.
"""

from dataclasses import dataclass, field, fields
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from initlab.options import (
    ACTIVATIONS,
    BASE_SCHEMAS,
    DATASETS,
    INITS,
    OPTION_GROUPS,
    ActConfig,
    DataConfig,
    InitConfig,
    at_least,
    is_custom,
    one_of,
    schema_name,
    schema_node,
)

OPTIMIZERS = ("sgd", "adam")
RECORDERS = ("grad_norms", "weights", "activations")
DEVICES = ("cpu", "cuda", "auto")
# What the report step draws and prints; "auto" picks by context (see ReportConfig).
FIGURE_SETS = ("auto", "none", "key", "full")
TABLE_SETS = ("auto", "line", "brief", "full")
PAGE_CHOICES = ("auto", "true", "false")
FIGURE_FORMATS = ("png", "svg", "pdf")
MAX_DPI = 1200


class ConfigError(ValueError):
    """A configuration value is out of range; the message is one line for the user."""


# ---------------------------------------------------------------------------- model
@dataclass
class ModelConfig:
    name: str = "mlp"
    depth: int = 3  # number of Linear layers: fc1 .. fc{depth}
    width: int = 16  # units in every hidden layer (the input size is data.dim)


# ---------------------------------------------------------------------------- optim
@dataclass
class OptimConfig:
    name: str = MISSING
    lr: float = 0.01
    weight_decay: float = 0.0


@dataclass
class SGDConfig(OptimConfig):
    name: str = "sgd"
    momentum: float = 0.0


@dataclass
class AdamConfig(OptimConfig):
    name: str = "adam"
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


# -------------------------------------------------------------------------- trainer
@dataclass
class TrainerConfig:
    epochs: int = 200
    batch_size: Optional[int] = None  # null: full batch, as in the textbook
    log_every: int = 20  # epochs between weight snapshots, activation stats, table rows
    device: str = "cpu"
    # CPU threads for torch; null = torch's default (one per core). One is fastest for the
    # lab's small nets and keeps parallel sweep jobs from fighting over cores.
    threads: Optional[int] = 1
    recorders: list[str] = field(default_factory=lambda: list(RECORDERS))
    weights_max_params: int = 200  # snapshot full weights only for models this small
    progress: bool = True
    # The record is written as training goes: at log epochs, at most this often, so a
    # killed run keeps all but the last few seconds (a short run writes once, at the end).
    flush_every_s: float = 5.0
    # data.pt and checkpoints/*.pt (the weights at init, best, last and a few log epochs).
    # false: a lean record of tables and summary only, for sweeps of thousands of jobs;
    # figures drawn from the tensors (decision boundaries, initial-weight histograms) are
    # then skipped, and the diagnosis reads the weights from weights.csv.
    save_tensors: bool = True


# ------------------------------------------------------------------------- diagnose
@dataclass
class DiagnoseConfig:
    """Thresholds of the findings in :mod:`initlab.diagnose`; docs/diagnosis.md explains each.

    Sources: AutoTrainer (Zhang et al., ICSE 2021, `AutoTrainer/utils/monitor.py` defaults
    beta_1, beta_2, beta_3, Theta) and the Amazon SageMaker Debugger built-in rules
    (VanishingGradient, DeadRelu, SaturatedActivation). Where initlab departs from them
    the comment says why.
    """

    # symmetric_weights: two hidden units are duplicates when their incoming weights, bias
    # and outgoing weights differ by at most this fraction of the layer's largest |value|.
    # Random inits differ by O(1); units of a zero/constant init are bit-identical.
    symmetric_rtol: float = 1e-4
    # vanishing_gradient: AutoTrainer's rule. The first layer's weight-gradient norm over the
    # last layer's (median over steps) is below `vanishing_ratio` (beta_1 = 1e-3) AND the
    # first layer's norm itself is below `vanishing_norm` (beta_2 = 1e-4).
    vanishing_ratio: float = 1e-3
    vanishing_norm: float = 1e-4
    # exploding_gradient: toward the input, the same ratio above AutoTrainer's beta_3 = 70;
    # over time (or from the start), any layer's weight-gradient norm above `exploding_norm`.
    # The absolute bound is initlab's own: the sources have none (SageMaker's ExplodingTensor
    # only looks for NaN/Inf). Healthy runs of this lab stay below ~3 (docs/diagnosis.md).
    exploding_ratio: float = 70.0
    exploding_norm: float = 100.0
    # dead_units: a unit is dead when it is non-zero on at most this fraction of the
    # training examples. 0 is the textbook definition (zero on every example); SageMaker's
    # DeadRelu uses 1% (threshold_inactivity = 1.0).
    dead_unit_max_active: float = 0.0
    # dead_units / saturation: a layer is reported when more than this fraction of its units
    # are dead, or of its activations (units x training examples) are saturated (in the flat
    # tail, |tanh| > 0.97, the recorders' SATURATION_THRESHOLD): SageMaker's threshold_layer
    # = 50% (DeadRelu counts units, SaturatedActivation counts activations).
    layer_fraction: float = 0.5
    # collapsed_representation and signal_phase are findings of deep nets: of at least this
    # many layers (three hidden layers and more; in a shallower net the correlation and the
    # per-layer factor are one or two layers' worth, the data's and the activation's mean's
    # doing more than the depth's).
    deep_min_depth: int = 4
    # collapsed_representation: a hidden layer is collapsed when the mean cosine between its
    # pre-activations of pairs of training inputs at init (init_signal.corr) is at least
    # this. Poole et al. (2016) and Schoenholz et al. (2017) follow this correlation map to
    # its fixed point c* = 1 in the ordered phase; at 0.95 two inputs differ by ~18 degrees.
    collapse_corr: float = 0.95
    # signal_phase: the backpropagated gradient's per-layer factor f at init (init_signal
    # grad_factor) is ordered or chaotic when |ln f| >= this (f outside 0.905..1.105: a depth
    # scale 1/|ln f| under 10 layers, Schoenholz et al. 2017's xi), and reported when
    # f^(depth-1) is beyond `phase_total_factor` either way (a change the layers' norms show
    # plainly). Theory's own "critical" band is narrower (initlab.theory.CRITICAL_LOG_CHI on
    # chi_1 = f^2): a factor measured at finite width is noisier than chi_1.
    phase_log_factor: float = 0.1
    phase_total_factor: float = 10.0
    # not_learning: judged only after this many epochs (AutoTrainer waits for 30% of the
    # planned epochs; a 1-epoch textbook run is too short to call).
    not_learning_min_epochs: int = 10
    # not_learning: best dev accuracy below chance (the dev majority class) plus this margin.
    # AutoTrainer's Theta asks for 0.7 on any task; chance + 0.1 is that for balanced classes.
    chance_margin: float = 0.1
    # not_learning: training loss falling by less than this fraction of its first-epoch value
    # (SageMaker's LossNotDecreasing compares losses num_steps apart in the same spirit).
    flat_loss_fraction: float = 0.01


# --------------------------------------------------------------------------- report
@dataclass
class ReportConfig:
    """What the report step after a run draws and prints (`initlab report` draws the full set).

    ``auto`` fits the context: a single run draws the key figures and prints brief tables;
    a job inside ``-m`` draws nothing and prints one line, and the sweep root gets the
    comparison. ``report=full`` draws and prints everything, ``report=minimal`` nothing but
    the one line; ``report.quiet=true`` prints nothing at all (errors still go to stderr).
    """

    figures: str = "auto"  # auto | none | key | full
    tables: str = "auto"  # auto | line | brief | full
    # auto: a single run writes its index.html; a job of a sweep leaves it to the sweep's
    # comparison, which writes the pages of the jobs its table shows (a 10,000-job sweep
    # should not write 10,000 pages nobody opens). true | false: always | never.
    page: str = "auto"  # auto | true | false
    sweep: bool = True  # the comparison (tables, figures) at the root of a sweep
    quiet: bool = False
    format: str = "png"  # png | svg | pdf
    dpi: int = 120


@dataclass
class Config:
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    act: ActConfig = MISSING
    init: InitConfig = MISSING
    optim: OptimConfig = MISSING
    trainer: TrainerConfig = MISSING
    diagnose: DiagnoseConfig = field(default_factory=DiagnoseConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    seed: int = 0
    # A run (or sweep) into a folder that already holds a record is refused unless this is
    # true; then the old record's files are removed first.
    overwrite: bool = False
    # The paper a preset reproduces (initlab.papers): its sweep's comparison then prints
    # the paper's claim beside initlab's measurement. Set by conf/experiment/<paper>.yaml.
    paper: Optional[str] = None


def register_configs() -> None:
    """Store the schemas so YAML options can name them as their first default.

    They are stored outside every config group (a YAML option names its schema with a
    leading slash: ``- /act_schema``), so Hydra never offers ``act=act_schema`` as an
    option: not in shell completion, not in its "Available options" error messages.
    """
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, specs in OPTION_GROUPS.items():
        for name in specs:
            cs.store(name=schema_name(group, name), node=schema_node(group, name))
    for name, node in (("model_schema", ModelConfig), ("sgd_schema", SGDConfig),
                       ("adam_schema", AdamConfig), ("trainer_schema", TrainerConfig),
                       ("diagnose_schema", DiagnoseConfig), ("report_schema", ReportConfig)):
        cs.store(name=name, node=node)


# The schema of each group option whose keys differ from its group's base schema; a key
# added with `+group.key=...` that the chosen option does not have is rejected by validate.
OPTION_SCHEMAS = {
    **{group: ({name: spec.schema for name, spec in specs.items()
                if spec.schema is not BASE_SCHEMAS[group]}, BASE_SCHEMAS[group])
       for group, specs in OPTION_GROUPS.items()},
    "optim": ({"sgd": SGDConfig, "adam": AdamConfig}, OptimConfig),
}


def _check_top_level_keys(cfg: Any) -> None:
    """`+foo=1` adds a key nothing reads: say so instead of training as if it mattered."""
    allowed = [f.name for f in fields(Config)]
    for key in cfg:
        _check(key in allowed or key == "hydra",
               f"{key} is not a config key (keys: {', '.join(allowed)})")


def _check_option_keys(cfg: Any) -> None:
    for group, (by_name, base) in OPTION_SCHEMAS.items():
        node = cfg[group]
        if is_custom(node.name):  # keys beyond the schema's are the target's kwargs
            continue
        schema = by_name.get(node.name, base)
        allowed = [f.name for f in fields(schema)]
        for key in node:
            _check(key in allowed, f"{group}.{key} does not apply to {group}={node.name} "
                                   f"(its keys: {', '.join(allowed)})")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _one_of(key: str, value: Any, choices: tuple) -> None:
    one_of(_check, key, value, choices)


# The largest seed: the run's stream seeds (seed * 1000 + stream, streams 0..2, see
# initlab.run.stream_seed) must fit the signed 64-bit seed every generator accepts.
MAX_SEED = (2**63 - 1 - 2) // 1000


def check_seed(seed: Any) -> None:
    _check(isinstance(seed, int) and 0 <= seed <= MAX_SEED,
           f"seed must be an integer in [0, {MAX_SEED}] (got {seed})")


def validate(cfg: Any) -> None:
    """Check what the schemas cannot: ranges, choices and cross-field constraints.

    ``cfg`` is the composed DictConfig (or anything with the same attributes).
    Raises ConfigError with a one-line message naming the key, value and valid range.
    Settings of the procedure (learning rate, noise, an init's distribution, gains) must be
    finite numbers; the values weights start at (``init.value``, ``init.bias``,
    ``init.mean``) may be anything, NaN and 1e30 included: those runs end ``diverged``,
    which is the experiment.
    """
    d, m, a, i, o, t = cfg.data, cfg.model, cfg.act, cfg.init, cfg.optim, cfg.trainer
    if "seed" in cfg:
        check_seed(cfg.seed)
    _one_of("data.name", d.name, tuple(DATASETS))
    _one_of("act.name", a.name, tuple(ACTIVATIONS))
    _one_of("init.name", i.name, tuple(INITS))
    _one_of("optim.name", o.name, OPTIMIZERS)
    if hasattr(cfg, "keys"):
        _check_top_level_keys(cfg)
    _check_option_keys(cfg)
    _check(d.n_samples >= 2, f"data.n_samples must be >= 2 (got {d.n_samples})")
    at_least(_check, "data.noise", d.noise, 0)
    for split in ("n_train", "n_dev", "n_test"):
        _check(d[split] >= 1, f"data.{split} must be >= 1 (got {d[split]})")
    total = d.n_train + d.n_dev + d.n_test
    _check(
        total <= d.n_samples,
        f"data split {d.n_train}+{d.n_dev}+{d.n_test}={total} is larger than "
        f"data.n_samples={d.n_samples}",
    )
    data_spec = DATASETS[d.name]
    _check(isinstance(d.dim, int) and d.dim >= 1, f"data.dim must be an integer >= 1 (got {d.dim})")
    _check(d.dim == 2 or data_spec.any_dim,
           f"data.dim={d.dim}: data={d.name} is 2-D (data sets of any dimension: "
           f"{', '.join(n for n, spec in DATASETS.items() if spec.any_dim)})")
    data_spec.check(d, _check)

    _check(m.depth >= 1, f"model.depth must be >= 1 (got {m.depth})")
    _check(m.width >= 1, f"model.width must be >= 1 (got {m.width})")
    ACTIVATIONS[a.name].check(a, _check)
    INITS[i.name].check(i, _check)
    at_least(_check, "init.bias_std", i.bias_std, 0)

    at_least(_check, "optim.lr", o.lr, 0, strict=True)
    at_least(_check, "optim.weight_decay", o.weight_decay, 0)
    if o.name == "sgd":
        at_least(_check, "optim.momentum", o.momentum, 0)
    if o.name == "adam":
        ok = len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas)
        _check(ok, f"optim.betas must be two numbers in [0, 1) (got {list(o.betas)})")

    _check(t.epochs >= 1, f"trainer.epochs must be >= 1 (got {t.epochs})")
    _check(
        t.batch_size is None or t.batch_size >= 1,
        f"trainer.batch_size must be >= 1 or null for full batch (got {t.batch_size})",
    )
    _check(t.log_every >= 1, f"trainer.log_every must be >= 1 (got {t.log_every})")
    _check(t.flush_every_s >= 0, f"trainer.flush_every_s must be >= 0 (got {t.flush_every_s})")
    _one_of("trainer.device", t.device, DEVICES)
    _check(t.threads is None or t.threads >= 1,
           f"trainer.threads must be >= 1 or null for torch's default (got {t.threads})")
    for name in t.recorders:
        _one_of("trainer.recorders entry", name, RECORDERS)
    if cfg.get("paper") is not None:
        from initlab.papers import PAPERS

        _one_of("paper", cfg.paper, tuple(PAPERS))
    if "diagnose" in cfg:
        validate_diagnose(cfg.diagnose)
    if "report" in cfg:
        validate_report(cfg.report)


def validate_report(r: Any) -> None:
    _one_of("report.figures", r.figures, FIGURE_SETS)
    _one_of("report.tables", r.tables, TABLE_SETS)
    _one_of("report.page", str(r.page).lower(), PAGE_CHOICES)
    _one_of("report.format", r.format, FIGURE_FORMATS)
    _check(1 <= r.dpi <= MAX_DPI, f"report.dpi must be in [1, {MAX_DPI}] (got {r.dpi})")


def validate_diagnose(g: Any) -> None:
    """Ranges of the diagnosis thresholds (see :class:`DiagnoseConfig`)."""
    for key in ("symmetric_rtol", "vanishing_ratio", "vanishing_norm", "exploding_ratio",
                "exploding_norm", "chance_margin", "flat_loss_fraction"):
        _check(g[key] > 0, f"diagnose.{key} must be > 0 (got {g[key]})")
    for key in ("dead_unit_max_active", "layer_fraction"):
        _check(0 <= g[key] < 1, f"diagnose.{key} must be in [0, 1) (got {g[key]})")
    _check(0 < g.collapse_corr < 1, f"diagnose.collapse_corr must be in (0, 1) (got {g.collapse_corr})")
    _check(g.phase_log_factor > 0, f"diagnose.phase_log_factor must be > 0 (got {g.phase_log_factor})")
    _check(g.deep_min_depth >= 2, f"diagnose.deep_min_depth must be >= 2 (got {g.deep_min_depth})")
    _check(g.phase_total_factor > 1,
           f"diagnose.phase_total_factor must be > 1 (got {g.phase_total_factor})")
    _check(g.not_learning_min_epochs >= 1,
           f"diagnose.not_learning_min_epochs must be >= 1 (got {g.not_learning_min_epochs})")
