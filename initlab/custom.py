"""Components of the user's own, named by ``_target_``: finding, building and checking them.

The ``custom`` option of the act, init and data groups names a Python callable in
``_target_`` (Hydra's ``instantiate`` convention); the node's keys beyond the group's own
are its keyword arguments. The contracts (docs/custom_components.md): an activation is a
``torch.nn.Module`` class or factory, built once per hidden layer, elementwise,
deterministic, differentiable, without parameters; an init fills one Linear weight in
place, ``target(weight, generator=gen, **kwargs)`` (plus ``bias=`` where it takes one),
drawing only from ``gen``; a data set is ``target(n_samples=, noise=, generator=gen,
**kwargs)`` (plus ``dim=``) returning binary-labelled ``(X, y)``. The checks try each
contract on a small probe before anything trains, in one line naming the key. A module
not on ``sys.path`` is looked for in the current folder, as ``python -m`` would. Code a
record names is never imported or called by a reader (:func:`code_missing`).
"""

import importlib
import inspect
import math
import os
import sys
from collections.abc import Callable
from typing import Any

from initlab.view import to_plain

CUSTOM = "custom"  # the option name, in each of the three groups
TARGET = "_target_"
# Hydra's other instantiate keys: initlab builds the target itself, with plain kwargs only.
HYDRA_KEYS = ("_args_", "_partial_", "_convert_", "_recursive_")
# The probes: small and fixed, so a check costs milliseconds and says the same every time.
PROBE_SEED, PROBE_SHAPE, PROBE_WEIGHT = 0, (5, 7), (4, 3)
MAX_MESSAGE = 240  # characters of a user's exception text kept in a one-line error
# Per group, a custom node's keys that are initlab's (its schema's fields, registered by
# initlab.options), not keyword arguments of the target.
OWN_KEYS: dict[str, frozenset[str]] = {}


class ComponentError(ValueError):
    """A custom component breaks its contract; the message is one line, naming the key."""


def is_custom(name: Any) -> bool:
    return name == CUSTOM


def target_of(node: Any) -> Any:
    """The node's ``_target_`` (None where it is missing, ``???``)."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(node, DictConfig) and OmegaConf.is_missing(node, TARGET):
        return None
    value = node.get(TARGET) if hasattr(node, "get") else getattr(node, TARGET, None)
    return None if value == "???" else value


def kwargs_of(group: str, node: Any) -> dict[str, Any]:
    """The keyword arguments of a custom node: its keys beyond the group's own, as plain values."""
    return {k: v for k, v in dict(to_plain(node)).items() if k not in OWN_KEYS[group]}


def describe(group: str, node: Any) -> str:
    """``mypkg.Swish(beta=2)``: a custom component by its target and kwargs, as tables show it."""
    kwargs = kwargs_of(group, node)
    return f"{target_of(node) or '?'}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"


def _failed(e: BaseException) -> str:
    line = "; ".join(x.strip() for x in f"{type(e).__name__}: {e}".splitlines() if x.strip())
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 1] + "…"


# ------------------------------------------------------------------ finding the target
def resolve(key: str, target: Any) -> Any:
    """The object a dotted path names: the longest importable module prefix, then
    attributes. Raises ComponentError naming ``key`` (``act._target_``) and what is wrong."""
    if not isinstance(target, str) or not target or not all(
            part.isidentifier() for part in target.split(".")):
        raise ComponentError(f"{key}={target} is not a dotted Python path (module.name, e.g. "
                             f"mypkg.Swish)")
    parts = target.split(".")
    module, found = None, 0
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        try:
            module, found = _import(name), n
            break
        except (Exception, SystemExit) as e:  # noqa: BLE001 - the user's module, importing
            if isinstance(e, ModuleNotFoundError) and e.name and (
                    name == e.name or name.startswith(e.name + ".")):
                continue  # this prefix is no module: try a shorter one
            why = (f"its module called sys.exit({e.code}) on import" if isinstance(e, SystemExit)
                   else f"importing {name} failed: {_failed(e)}")  # an exit is said, not obeyed
            raise ComponentError(f"{key}={target}: {why}") from None
    if module is None:
        raise ComponentError(f"{key}={target}: no module named {parts[0]!r} (initlab looks on "
                             f"PYTHONPATH and in the current folder {os.getcwd()})")
    obj = module
    for i in range(found, len(parts)):
        if not hasattr(obj, parts[i]):
            raise ComponentError(f"{key}={target}: {'.'.join(parts[:i])} has no attribute "
                                 f"{parts[i]!r}")
        obj = getattr(obj, parts[i])
    return obj


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        here = os.getcwd()
        top = name.split(".")[0]
        if e.name != top or here in sys.path or "" in sys.path:
            raise
        # A module of the user's beside the command, as `python -m` would find it; appended,
        # so it never shadows an installed package.
        sys.path.append(here)
        return importlib.import_module(name)


def _key(group: str) -> str:
    return f"{group}.{TARGET}"


def _target(group: str, node: Any) -> str:
    target = target_of(node)
    if target is None:
        raise ComponentError(f"{_key(group)} is required with {group}={CUSTOM}: {_WHAT[group]} "
                             f"(e.g. {_key(group)}={_EXAMPLE[group]})")
    return target


_WHAT = {"act": "name a torch.nn.Module class or a factory returning one",
         "init": "name a function that fills a weight in place, fn(weight, generator=gen, **kwargs)",
         "data": "name a function returning (X, y), fn(n_samples=, noise=, generator=, **kwargs)"}
_EXAMPLE = {"act": "mypkg.Swish", "init": "mypkg.my_init", "data": "mypkg.make_data"}


def _kwargs(group: str, node: Any) -> dict[str, Any]:
    kwargs = kwargs_of(group, node)
    for k in kwargs:
        if k in HYDRA_KEYS or k == "_target_":
            raise ComponentError(f"{group}.{k} is one of Hydra's instantiate keys, which initlab "
                                 f"does not read: give the target's own arguments only")
    return kwargs


def _located(group: str, node: Any) -> tuple[str, Any, dict[str, Any]]:
    target = _target(group, node)
    found = resolve(_key(group), target)
    _ran.add(target)
    return target, found, _kwargs(group, node)


def _bind_problem(fn: Callable, args: tuple, kwargs: dict) -> str | None:
    """Why ``fn(*args, **kwargs)`` cannot be called, from its signature (None: it can, or
    it has no signature to read, as some builtins)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*args, **kwargs)
    except TypeError as e:
        return f"{e} (its signature: {signature})"
    return None


def _takes(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params and params[name].kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                    inspect.Parameter.KEYWORD_ONLY)


# ------------------------------------------------------------------ activations
def build_activation(cfg: Any):
    """The module ``act._target_(**kwargs)`` builds (one per hidden layer)."""
    from torch import nn

    target, obj, kwargs = _located("act", cfg)
    key = f"{_key('act')}={target}"
    if isinstance(obj, nn.Module):
        raise ComponentError(f"{key} is a torch.nn.Module object: name its class, or a "
                             f"factory returning a new one, so each layer gets its own")
    if isinstance(obj, type) and not issubclass(obj, nn.Module):
        raise ComponentError(f"{key} is the class {obj.__name__}, not a torch.nn.Module")
    if not callable(obj):
        raise ComponentError(f"{key} is a {type(obj).__name__}, not a torch.nn.Module class "
                             f"or a factory returning one")
    hint = ("" if isinstance(obj, type) else " (an activation is a torch.nn.Module class or a "
            "factory returning one: wrap a function of x in a module, docs/custom_components.md)")
    problem = _bind_problem(obj, (), kwargs)
    if problem:
        raise ComponentError(f"{key} cannot be built as {target}(**{kwargs}): {problem}{hint}")
    try:
        module = obj(**kwargs)
    except Exception as e:  # noqa: BLE001 - the user's constructor: one line
        raise ComponentError(f"{key}: building it with {kwargs} failed: {_failed(e)}"
                             f"{hint if isinstance(e, TypeError) else ''}") from None
    if not isinstance(module, nn.Module):
        raise ComponentError(f"{key} returned a {type(module).__name__}, not a torch.nn.Module "
                             f"(an activation is a module class or a factory returning a module)")
    return module


def _activation_problem(cfg: Any) -> str | None:
    """Build the activation and try it on a float32 probe: the contract, in one line each."""
    import torch

    module = build_activation(cfg)
    key = f"{_key('act')}={target_of(cfg)}"
    held = [name for name, _ in module.named_parameters()] + list(module.state_dict())
    if held:
        return (f"{key} holds parameters or buffers ({', '.join(dict.fromkeys(held))}): an "
                f"activation here is a fixed function, its settings keyword arguments "
                f"(act.<name>=...), so the state dicts hold the Linear layers only")
    x = (3 * torch.randn(PROBE_SHAPE, generator=torch.Generator().manual_seed(PROBE_SEED))
         ).requires_grad_(True)
    shape = tuple(x.shape)
    try:
        y = module(x)
    except Exception as e:  # noqa: BLE001
        return f"{key}: calling it on a float32 tensor of shape {shape} failed: {_failed(e)}"
    if not isinstance(y, torch.Tensor):
        return f"{key} returned a {type(y).__name__} for a tensor input, not a tensor"
    if tuple(y.shape) != shape:
        return (f"{key} changes the shape {shape} -> {tuple(y.shape)}: an activation is "
                f"elementwise, its output the input's shape")
    if y.dtype != x.dtype:
        return f"{key} returns {y.dtype} for a {x.dtype} input: keep the input's dtype"
    if not y.requires_grad:
        return (f"{key} passes no gradient (its output does not depend on the input through "
                f"torch operations: no .detach(), .item() or NumPy inside)")
    with torch.no_grad():
        x = x.detach()
        y = y.detach()
        same = [module(x), module(x.t()).t(), module(x[:2]), module(x.reshape(1, *shape)),
                module(x.flatten())]
        want = [y, y, y[:2], y.reshape(1, *shape), y.flatten()]
    if not torch.equal(same[0], y) and not _close(same[0], y):
        return f"{key} gives different outputs for the same input: an activation is deterministic"
    for got, expected in zip(same[1:], want[1:]):
        if tuple(got.shape) != tuple(expected.shape) or not _close(got, expected):
            return (f"{key} is not elementwise: its output for an entry depends on the others "
                    f"(a transposed, sliced or reshaped input changes it); initlab applies it "
                    f"to (examples, units) and (members, units, examples) tensors")
    return None


def _close(a, b) -> bool:
    import torch

    return torch.allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True)


# The module-backed functions mean-field theory and the gain integrate (float64 where the
# module takes it, else float32), one module per setting.
_functions: dict[tuple, tuple] = {}


def _evaluator(cfg: Any) -> tuple[Any, Any]:
    key = _fingerprint("act", cfg)
    if key not in _functions:
        import torch

        module = build_activation(cfg)
        dtype = torch.float64
        try:
            module(torch.zeros(3, dtype=dtype))
        except Exception:  # noqa: BLE001 - a module written for float32 only
            dtype = torch.float32
        if len(_functions) > 64:
            _functions.clear()
        _functions[key] = (module, dtype)
    return _functions[key]


def activation_pointwise(cfg: Any) -> Callable:
    """The activation as a function of floats (one float or a float64 array), by calling its
    module: what mean-field theory integrates (:mod:`initlab.theory`)."""
    return _through_module(cfg, slope=False)


def activation_slope(cfg: Any) -> Callable:
    """The activation's derivative at floats, by autograd through its module (elementwise,
    so the gradient of the sum is each entry's own slope)."""
    return _through_module(cfg, slope=True)


def _through_module(cfg: Any, slope: bool) -> Callable:
    import numpy as np
    import torch

    from initlab.theory import vectorized

    module, dtype = _evaluator(cfg)

    def f(x):
        with torch.enable_grad() if slope else torch.no_grad():
            leaf = torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=dtype).requires_grad_(slope)
            out = module(leaf)
            if slope:
                (out,) = torch.autograd.grad(out.sum(), leaf, allow_unused=True)
                out = torch.zeros_like(leaf) if out is None else out
        out = out.detach().double().numpy()
        return float(out) if np.ndim(x) == 0 else out

    return vectorized(f)


_gains: dict[tuple, float] = {}


def activation_gain(cfg: Any) -> float:
    """The gain that keeps the forward variance steady, 1 / sqrt(E[f(z)^2]) for z ~ N(0, 1)
    (ReLU's: sqrt 2; what He et al. derive), integrated over the module itself; 1 where that
    is 0 or not finite. Fan-scaled inits with ``gain: null`` multiply by it."""
    key = _fingerprint("act", cfg)
    if key not in _gains:
        from initlab.theory import gaussian_mean, squared

        second = gaussian_mean(squared(activation_pointwise(cfg)), 0.0, 1.0)
        _gains[key] = 1 / math.sqrt(second) if math.isfinite(second) and second > 0 else 1.0
    return _gains[key]


# ------------------------------------------------------------------ inits
def fill_weight_(weight, bias, cfg: Any, gen) -> None:
    """One Linear layer by ``init._target_``: ``target(weight, generator=gen, **kwargs)``
    (and ``bias=bias`` where the target takes one), under no_grad. ``bias`` already holds
    ``init.bias``; None: a weight alone (the report's fresh draws)."""
    import torch

    target, fn, kwargs = _located("init", cfg)
    if not callable(fn) or isinstance(fn, type):
        raise ComponentError(f"{_key('init')}={target} is a {type(fn).__name__}, not a function "
                             f"that fills a weight in place")
    if _takes(fn, "bias"):
        kwargs = {**kwargs, "bias": bias if bias is not None else torch.empty(weight.shape[0])}
    with torch.no_grad():
        fn(weight, generator=gen, **kwargs)


def _init_problem(cfg: Any) -> str | None:
    """Call the init on a probe weight twice with one seed: it fills every entry in place
    and draws from the generator it is given."""
    import torch

    target, fn, kwargs = _located("init", cfg)
    key = f"{_key('init')}={target}"
    if isinstance(fn, type) or not callable(fn):
        return (f"{key} is a {'class' if isinstance(fn, type) else type(fn).__name__}, not a "
                f"function: an init fills a weight in place, fn(weight, generator=gen, **kwargs)")
    extra = {"bias": None} if _takes(fn, "bias") else {}
    problem = _bind_problem(fn, (None,), {"generator": None, **extra, **kwargs})
    if problem:
        return f"{key} cannot be called as {target}(weight, generator=gen, **{kwargs}): {problem}"
    weights = []
    for _ in range(2):
        weight = torch.full(PROBE_WEIGHT, math.nan)
        bias = torch.full(PROBE_WEIGHT[:1], float(cfg.bias))
        gen = torch.Generator().manual_seed(PROBE_SEED)
        try:
            with torch.no_grad():
                kw = {**kwargs, **({"bias": bias} if extra else {})}
                returned = fn(weight, generator=gen, **kw)
        except Exception as e:  # noqa: BLE001
            return (f"{key}: calling it on a {PROBE_WEIGHT[0]}x{PROBE_WEIGHT[1]} weight failed: "
                    f"{_failed(e)}")
        if bool(weight.isnan().any()):
            why = (" (it returned a new tensor: fill `weight` itself, e.g. weight.copy_(...))"
                   if isinstance(returned, torch.Tensor) and returned is not weight else "")
            return (f"{key} left entries of the weight unset (NaN) on a {PROBE_WEIGHT[0]}x"
                    f"{PROBE_WEIGHT[1]} probe: an init fills every entry in place{why}")
        weights.append((weight, bias))
    (w1, b1), (w2, b2) = weights
    if not (torch.equal(w1, w2) and torch.equal(b1, b2)):
        return (f"{key} drew different weights from two generators of the same seed: draw every "
                f"random number from `generator` (e.g. weight.normal_(0, 0.1, generator=generator)),"
                f" so a run is reproducible from its seed")
    return None


# ------------------------------------------------------------------ data sets
def make_data(cfg: Any, gen) -> tuple:
    """``data._target_(n_samples=, noise=, generator=gen, **kwargs)`` as float32 (X, y),
    checked, then shuffled from ``gen`` where ``data.shuffle`` (a data set returned in
    class order is split fairly)."""
    import torch

    target, fn, kwargs = _located("data", cfg)
    X, y = _data_of(cfg, target, fn(n_samples=cfg.n_samples, noise=cfg.noise, generator=gen,
                                    **_data_extra(fn, cfg), **kwargs))
    if cfg.shuffle:
        order = torch.randperm(X.shape[0], generator=gen)
        X, y = X[order], y[order]
    return X, y


def _data_extra(fn: Callable, cfg: Any) -> dict[str, Any]:
    return {"dim": cfg.dim} if _takes(fn, "dim") else {}


def _data_of(cfg: Any, target: str, returned: Any) -> tuple:
    """The (X, y) a data callable returned, as float32 tensors; ComponentError where they
    break the contract."""
    import torch

    key = f"{_key('data')}={target}"
    if not isinstance(returned, (tuple, list)) or len(returned) != 2:
        raise ComponentError(f"{key} returned a {type(returned).__name__}; a data set returns "
                             f"a pair (X, y)")
    try:
        X, y = (torch.as_tensor(v).detach().cpu() for v in returned)
    except Exception as e:  # noqa: BLE001
        raise ComponentError(f"{key}: X and y must be tensors or arrays: {_failed(e)}") from None
    n, dim = cfg.n_samples, cfg.dim
    if X.dim() != 2 or X.shape[0] != n:
        raise ComponentError(f"{key} returned X of shape {tuple(X.shape)}: expected (n_samples, "
                             f"data.dim) = ({n}, {dim})")
    if X.shape[1] != dim:
        raise ComponentError(f"{key} returned X with {X.shape[1]} features but data.dim={dim} "
                             f"(set data.dim={X.shape[1]})")
    if not X.is_floating_point():
        raise ComponentError(f"{key} returned X of dtype {X.dtype}: features are floating point")
    if not bool(torch.isfinite(X).all()):
        raise ComponentError(f"{key} returned X with NaN or Inf values")
    if tuple(y.shape) != (n,):
        raise ComponentError(f"{key} returned y of shape {tuple(y.shape)}: expected one label "
                             f"per point, ({n},)")
    if y.dtype == torch.bool:
        y = y.float()
    if y.is_complex() or not bool(((y == 0) | (y == 1)).all()):
        others = sorted({float(v) for v in y.flatten().tolist() if v not in (0, 1)})[:5]
        raise ComponentError(f"{key} returned labels other than 0 and 1 "
                             f"(e.g. {', '.join(f'{v:g}' for v in others)}): y is binary")
    return X.float(), y.float()


def _data_problem(cfg: Any) -> str | None:
    """Make the data twice from one seed: the contract's shapes and labels, the same points."""
    import torch

    target, fn, kwargs = _located("data", cfg)
    key = f"{_key('data')}={target}"
    if not callable(fn):
        return f"{key} is a {type(fn).__name__}, not a function returning (X, y)"
    kwargs = {**_data_extra(fn, cfg), **kwargs}
    problem = _bind_problem(fn, (), {"n_samples": 0, "noise": 0.0, "generator": None, **kwargs})
    if problem:
        return (f"{key} cannot be called as {target}(n_samples=, noise=, generator=, "
                f"**{kwargs}): {problem}")
    made = []
    for _ in range(2):
        gen = torch.Generator().manual_seed(PROBE_SEED)
        try:
            returned = fn(n_samples=cfg.n_samples, noise=cfg.noise, generator=gen, **kwargs)
        except Exception as e:  # noqa: BLE001
            return f"{key}: calling it with n_samples={cfg.n_samples} failed: {_failed(e)}"
        made.append(_data_of(cfg, target, returned))
    (X1, y1), (X2, y2) = made
    if not (torch.equal(X1, X2) and torch.equal(y1, y2)):
        return (f"{key} made different data from two generators of the same seed: draw every "
                f"random number from `generator`, so a run is reproducible from its seed")
    return None


# ------------------------------------------------------------------ caches and reports
_checked: dict[tuple, str | None] = {}


def _fingerprint(group: str, node: Any) -> tuple:
    return (group, repr(target_of(node)), repr(sorted(kwargs_of(group, node).items())))


def _checker(group: str, problem: Callable, settings: Callable = lambda cfg: ()) -> Callable:
    """``group``'s check for config.validate, ``check(cfg, report)``: ``problem(cfg)`` (a
    ComponentError is one too) asked once per target and settings, as a sweep asks it."""
    def check(cfg: Any, report: Callable[[bool, str], None]) -> None:
        key = (_fingerprint(group, cfg), *settings(cfg))
        if key not in _checked:
            if len(_checked) > 256:
                _checked.clear()
            try:
                _checked[key] = problem(cfg)
            except ComponentError as e:
                _checked[key] = str(e)
        report(_checked[key] is None, _checked[key] or "")
    return check


check_activation = _checker("act", _activation_problem)
check_init = _checker("init", _init_problem)
check_data = _checker("data", _data_problem, lambda cfg: (cfg.n_samples, cfg.noise, cfg.dim))


_noted: set[str] = set()
# Targets this process resolved to run them: the user's own config, checked and trained
# here. A record read later names code too, and that code is never imported or called.
_ran: set[str] = set()


def code_missing(config: dict, groups: tuple[str, ...] = ("act", "init")) -> str | None:
    """Why the figures that call a recorded run's custom components of ``groups`` are not
    drawn here, or None. Reading a record never imports or calls the code it names (records
    are shared; ``_target_`` may name any callable): only the process that ran the config,
    by the user's own command, draws them. One note on stderr per component."""
    for group in groups:
        node = config.get(group)
        if isinstance(node, dict) and is_custom(node.get("name")) and node.get(TARGET) not in _ran:
            why = f"{_key(group)}={node.get(TARGET)} is code a record names, never run by a reader"
            if why not in _noted:
                _noted.add(why)
                print(f"initlab: note: {why}; the figures that need it are skipped",
                      file=sys.stderr)
            return why
    return None
