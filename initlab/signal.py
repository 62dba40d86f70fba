"""Signal propagation at init: what the net does to its inputs before the first step,
measured on stacked parameters (members, ...), beside what mean-field theory
(:mod:`initlab.theory`) predicts. Per layer fc1..fcN, on the first ``SIGNAL_EXAMPLES``
training inputs: ``q`` = E[z_l^2] (``q_unseen``: on the next ones, held out from LSUV's
batch), ``corr`` (mean cosine of the inputs 2i, 2i+1: near 1, a collapsed representation),
``grad_sq`` = mean ||dloss_i/dz_l||^2; per net: ``born_dead`` (the output is one number on
every input, Lu et al., 2019), ``dead_layer``, ``output_range``, the gradient factor per
layer, and for nets up to ``JACOBIAN_MAX_WIDTH`` the exact singular values of d h_(N-1)/d h_1
(Saxe et al., 2014) and each hidden layer's mean Jacobian singular value (Glorot & Bengio, 2010).
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from initlab import theory
from initlab.model import feature_major, trace
from initlab.options import activation, init_scheme
from initlab.theory import grad_factor

SIGNAL_EXAMPLES = 256
JACOBIAN_EXAMPLES = 8
JACOBIAN_MAX_WIDTH = 256
JACOBIAN_QR_SWEEPS = 30  # at most, QR iterations for the singular values of a graded product
# Within this range of the largest, the formed product's SVD is exact to ~1e-4 relative.
JACOBIAN_DIRECT_RANGE = 1e10
JACOBIAN_GRADED_BATCH = 32  # graded products at once: 32 x 6 x 256^2 float64 = 100 MB at most
# Members measured at once: their hidden layers stay under this many values (256 MB).
MAX_VALUES = 1 << 26


def _pair_cosine(z: torch.Tensor) -> torch.Tensor:
    """(M,) mean cosine between the vectors of examples 2i and 2i+1 of z (M, units, n)."""
    pairs = z.shape[2] // 2
    if z.shape[1] < 2 or pairs == 0:
        return torch.full((z.shape[0],), math.nan, dtype=z.dtype, device=z.device)
    a, b = z[:, :, 0:2 * pairs:2].double(), z[:, :, 1:2 * pairs:2].double()
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    return cos.nanmean(1).to(z.dtype)  # a zero vector has no direction: left out


@torch.no_grad()
def measure(params: list[torch.Tensor], act: torch.nn.Module, act_backward: Callable,
            x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each member's measurements (the module doc) as (M, ...) tensors; ``x`` (M, features,
    n), ``y`` (M, n) 0/1 labels; ``act_backward(grad, z, h)`` the activation's gradient."""
    M, depth = params[0].shape[0], len(params) // 2
    width = params[0].shape[1]
    per_member = max(1, width * x.shape[2] * depth)
    if M * per_member > MAX_VALUES:  # in chunks of members, joined at the end
        step = max(1, MAX_VALUES // per_member)
        parts = [measure([p[i:i + step] for p in params], act, act_backward, x[i:i + step],
                         y[i:i + step]) for i in range(0, M, step)]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    pre, hs, logits = trace(params, feature_major(act), x)
    zs = [*pre, logits.unsqueeze(1)]  # every layer's pre-activations, the output's too
    out = {"output_range": (logits.amax(1) - logits.amin(1)).float()}
    dead = torch.stack([(h == 0).all(2).all(1) for h in hs], 1) if hs else \
        torch.zeros(M, 0, dtype=torch.bool)
    out["dead_layer"] = torch.where(dead.any(1), dead.float().argmax(1), -1) if hs else \
        torch.full((M,), -1)
    out["born_dead"] = out["output_range"] == 0
    n = min(SIGNAL_EXAMPLES, x.shape[2])
    zs_n = [z[:, :, :n] for z in zs]
    out["q"] = torch.stack([(z.double() ** 2).mean((1, 2)) for z in zs_n], 1)
    out["q_unseen"] = torch.stack([(z[:, :, n:2 * n].double() ** 2).mean((1, 2)) for z in zs], 1)
    out["corr"] = torch.stack([_pair_cosine(z) for z in zs_n], 1)
    out["input_norms_sq"] = (x[:, :, :n].double() ** 2).sum(1)  # each input's: theory maps each
    out["input_sq"] = out["input_norms_sq"].mean(1)
    if act_backward is None:  # an activation with no ATen kernel listed: autograd's gradient
        act_backward = _autograd_backward(act)
    # Each example's own loss: d loss_i / d logit_i = sigmoid(logit_i) - y_i.
    d = (torch.sigmoid(zs_n[-1]) - y[:, None, :n])
    grad_sq = [None] * depth
    grad_sq[-1] = (d.double() ** 2).sum(1).mean(1)
    g = d * params[-2].transpose(1, 2)  # d loss / d h_(N-1)
    for k in range(depth - 2, -1, -1):
        dz = act_backward(g, zs_n[k], hs[k][:, :, :n])
        grad_sq[k] = (dz.double() ** 2).sum(1).mean(1)
        if k:
            g = torch.bmm(params[2 * k].transpose(1, 2), dz)
    out["grad_sq"] = torch.stack(grad_sq, 1)
    if depth >= 3 and width <= JACOBIAN_MAX_WIDTH:
        out["jacobian_log_sv"], out["layer_sv_mean"] = _jacobians(params, zs, hs, act_backward)
    return out


def _autograd_backward(act: torch.nn.Module) -> Callable:
    """``f(grad_out, z, out) -> grad_z`` of any activation module, through autograd."""

    def backward(g: torch.Tensor, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            leaf = z.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(act(leaf), leaf, g)
        return grad

    return backward


def _jacobians(params, zs, hs, act_backward) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, examples, width) log singular values, largest first, of d h_(N-1) / d h_1 =
    prod_l D_l W_l at the first JACOBIAN_EXAMPLES inputs (-inf: exact zeros, counted from the
    dead units that bound the rank; one product where every slope is the same, a linear
    net), exact however wide their range: the formed float64 product's SVD, or where its
    smallest nonzero value lies beyond JACOBIAN_DIRECT_RANGE, :func:`_graded_log_singular_values`.
    And (M, layers): the mean singular value of each hidden layer's D_l W_l at the first
    input (Glorot & Bengio, 2010, Eq. 17), from the eigenvalues of D W W^T D."""
    M, width = params[0].shape[0], params[0].shape[1]
    k = min(JACOBIAN_EXAMPLES, zs[0].shape[2])
    layers = range(1, len(params) // 2 - 1)
    slopes = [act_backward(torch.ones_like(zs[i][:, :, :k]), zs[i][:, :, :k], hs[i][:, :, :k]).double()
              for i in layers]  # (M, width, k) each
    shared = all(bool((s == s[:, :, :1]).all()) for s in slopes)
    n = 1 if shared else k
    slopes = [s[:, :, :n].transpose(1, 2) for s in slopes]  # (M, n, width)
    weights = [params[2 * i].double() for i in layers]
    layer_sv_mean = torch.stack([_mean_singular_value(
        s[:, :1, :, None] * (w @ w.transpose(1, 2)).unsqueeze(1) * s[:, :1, None, :])
        for s, w in zip(slopes, weights)], 1)
    rank = torch.full((M, n), width, dtype=torch.long)
    jac = torch.eye(width, dtype=torch.float64).expand(M, n, width, width)
    for s, w in zip(slopes, weights):
        rank = torch.minimum(rank, (s != 0).sum(2))
        jac = s.unsqueeze(3) * (w.unsqueeze(1) @ jac)
    # A member whose weights overflowed (init.std=1e300) has no spectrum; the SVD of a
    # non-finite matrix fails for the whole batch, so it gets a zero one and NaN logs.
    bad = ~torch.isfinite(jac).flatten(2).all(2)
    sv = torch.linalg.svdvals(torch.where(bad[:, :, None, None], 0.0, jac))
    logs = sv.log()
    kept = sv.gather(2, (rank - 1).clamp(min=0).unsqueeze(2)).squeeze(2)
    graded = (rank > 0) & (kept < sv[:, :, 0] / JACOBIAN_DIRECT_RANGE)
    member, example = graded.nonzero(as_tuple=True)
    for i in range(0, len(member), JACOBIAN_GRADED_BATCH):  # ~6 width x width copies each
        m, e = member[i:i + JACOBIAN_GRADED_BATCH], example[i:i + JACOBIAN_GRADED_BATCH]
        logs[m, e] = _graded_log_singular_values([s[m, e] for s in slopes], [w[m] for w in weights])
    logs = torch.where(torch.arange(width) < rank.unsqueeze(2), logs, -math.inf)
    logs = torch.where(bad.unsqueeze(2), math.nan, logs)
    return (logs.expand(M, k, width) if shared else logs), layer_sv_mean


def _mean_singular_value(gram: torch.Tensor) -> torch.Tensor:
    """(M,) mean sqrt-eigenvalue of (M, 1, w, w) Gram matrices; NaN for a member whose
    matrix overflowed (eigvalsh of a non-finite matrix fails for the whole batch)."""
    bad = ~torch.isfinite(gram).flatten(1).all(1)
    values = torch.linalg.eigvalsh(torch.where(bad[:, None, None, None], 0.0, gram))
    return torch.where(bad, math.nan, values.clamp(min=0).sqrt().mean((1, 2)))


def _column_major(a: torch.Tensor) -> torch.Tensor:
    """The matrices stored column-major, as LAPACK takes them (2.3x faster batched QR)."""
    return a.transpose(1, 2).contiguous().transpose(1, 2)


def _graded_log_singular_values(slopes: list[torch.Tensor], weights: list[torch.Tensor]) -> torch.Tensor:
    """(F, width) log singular values, largest first, of F products prod_l diag(s_l) W_l kept
    unformed as U diag(d) T (a pre-pivoted QR per layer), then unshifted QR sweeps on the
    transpose of diag(d) T, whose diagonal converges to them."""
    F, width = weights[0].shape[0], weights[0].shape[1]
    u = torch.eye(width, dtype=torch.float64).expand(F, width, width).clone()
    d = torch.ones(F, width, dtype=torch.float64)
    t = u.clone()
    for s, w in zip(slopes, weights):
        a = s.unsqueeze(2) * (w @ u) * d.unsqueeze(1)
        order = a.norm(dim=1).argsort(dim=1, descending=True)
        q, r = torch.linalg.qr(_column_major(torch.gather(a, 2, order.unsqueeze(1).expand_as(a))))
        diag = r.diagonal(dim1=1, dim2=2)
        sign = torch.where(diag < 0, -1.0, 1.0)
        u, d = q * sign.unsqueeze(1), diag.abs()
        scale = torch.where(d > 0, d, 1.0)  # an exact zero column: nothing to rescale
        t = (r * sign.unsqueeze(2) / scale.unsqueeze(2)) @ torch.gather(t, 1, order.unsqueeze(2).expand_as(t))
    r = d.unsqueeze(2) * t
    for _ in range(JACOBIAN_QR_SWEEPS):
        r = torch.linalg.qr(r.transpose(1, 2), mode="r")[1]  # a transposed view: column major
        diag = r.diagonal(dim1=1, dim2=2).abs()
        # Off-diagonal at 1e-8 of the diagonal moves a singular value by ~1e-16 of it.
        if bool(((r.abs().triu(1).amax(2) <= 1e-8 * diag) | (diag == 0)).all()):
            break
    return r.diagonal(dim1=1, dim2=2).abs().log().sort(dim=1, descending=True).values


# ------------------------------------------------------------------ one member's record
def _finite(values) -> list[float | None]:
    return [float(v) if math.isfinite(float(v)) else None for v in values]


def _exp(log: torch.Tensor) -> float | None:
    """exp of a log singular value; None beyond float64's range (the log is what counts)."""
    value = math.exp(float(log)) if float(log) < 709 else math.inf
    return value if 0 < value < math.inf or float(log) == -math.inf else None


def member_signal(measured: dict[str, torch.Tensor], m: int, layers: list[str], cfg: Any,
                  shapes: list[tuple[int, int]]) -> dict[str, Any]:
    """Member ``m``'s init_signal block: its measurements and theory's prediction."""
    grad_sq = _finite(measured["grad_sq"][m].tolist())
    dead = int(measured["dead_layer"][m])
    block: dict[str, Any] = {
        "layers": layers,
        "q": _finite(measured["q"][m].tolist()),
        "q_unseen": _finite(measured["q_unseen"][m].tolist()),
        "corr": _finite(measured["corr"][m].tolist()),
        "grad_sq": grad_sq,
        "grad_factor": grad_factor(grad_sq),
        "born_dead": bool(measured["born_dead"][m]),
        "dead_layer": layers[dead] if dead >= 0 else None,
        "output_range": float(measured["output_range"][m]),
    }
    if "jacobian_log_sv" in measured:
        logs = measured["jacobian_log_sv"][m].flatten()
        nonzero = logs[torch.isfinite(logs)]
        block["jacobian"] = {
            "examples": int(measured["jacobian_log_sv"].shape[1]),
            "max": _exp(logs.max()), "min_nonzero": _exp(nonzero.min()) if nonzero.numel() else None,
            "log10_condition": float(nonzero.max() - nonzero.min()) / math.log(10)
            if nonzero.numel() else None,
            "mean_log": float(nonzero.mean()) if nonzero.numel() else None,
            "std_log": float(nonzero.std(correction=0)) if nonzero.numel() else None,
            "zeros": int(logs.numel() - nonzero.numel()), "values": int(logs.numel()),
            "layer_sv_mean": _finite(measured["layer_sv_mean"][m].tolist()),
        }
    else:
        block["jacobian"] = None
    block["theory"] = predicted(cfg, shapes, measured["input_norms_sq"][m].numpy(), grad_sq)
    return block


# Predictions cached by their inputs (input norms to float32's digits): seeds of one data set share one.
PREDICTION_CACHE_SIZE = 4096
_cache: dict[tuple, dict | None] = {}


def predicted(cfg: Any, shapes: list[tuple[int, int]], input_norms_sq,
              grad_sq: list[float | None]) -> dict[str, Any] | None:
    """Mean-field theory's q_l and grad_sq_l (anchored at the measured last layer), chi_1 at
    the hidden fixed point, its phase and the edge of chaos (:func:`initlab.theory.critical`);
    None where weights are not i.i.d. with mean 0 (zeros, constant, a normal with a mean),
    set from data (LSUV) or drawn by a custom init."""
    init, act = cfg.init, cfg.act
    spec = init_scheme(init.name)
    if spec.fill is not None:
        return None
    gain = activation(act.name).gain(act)
    draws = [spec.draw(init, gain, fan_in, fan_out) for fan_out, fan_in in shapes]
    zero_mean = all(d.kind in ("truncated_normal", "orthogonal")
                    or (d.kind == "normal" and d.mean == 0)
                    or (d.kind == "uniform" and d.low == -d.high) for d in draws)
    bias = float(init.bias)
    if spec.data_dependent or not zero_mean or not math.isfinite(bias) or abs(bias) > 1e6:
        return None
    norms = np.asarray(input_norms_sq, dtype=np.float32)
    key = (act.name, tuple(sorted((k, repr(v)) for k, v in _items(act))),
           tuple(draws), tuple(shapes), float(init.bias), float(getattr(init, "bias_std", 0.0)),
           norms.tobytes())
    if key not in _cache:
        if len(_cache) >= PREDICTION_CACHE_SIZE:
            _cache.clear()
        try:
            _cache[key] = _predict(cfg, draws, shapes, norms.astype(np.float64), key[:2])
        except OverflowError:  # a variance past float64 (init.std=1e300): no prediction
            _cache[key] = None
    base = _cache[key]
    if base is None:
        return None
    out = dict(base)
    last = grad_sq[-1]
    if last is not None and last > 0:
        chain = [last]
        for chi in reversed(base["chi"]):
            chain.append(chain[-1] * chi)
        out["grad_sq"] = list(reversed(chain))
    else:
        out["grad_sq"] = None
    return out


def _items(node: Any) -> list[tuple[str, Any]]:
    keys = node.keys() if hasattr(node, "keys") else vars(node).keys()
    return [(k, node[k] if hasattr(node, "keys") else getattr(node, k)) for k in keys]


def _predict(cfg: Any, draws, shapes, input_norms_sq, act_key: tuple) -> dict[str, Any] | None:
    spec = activation(cfg.act.name)
    phi, slope = spec.pointwise(cfg.act), spec.slope(cfg.act)
    moments = [d.second_moment(fan_in, fan_out) for d, (fan_out, fan_in) in zip(draws, shapes)]
    fan_ins = [fan_in for _, fan_in in shapes]
    b0, sigma_b2 = float(cfg.init.bias), float(getattr(cfg.init, "bias_std", 0.0)) ** 2
    pred = theory.predict(moments, fan_ins, b0, sigma_b2, phi, slope, input_norms_sq)
    if not all(math.isfinite(q) for q in pred.q):
        return None
    # chi_1 at the hidden map's fixed point (fc2's sigma_w^2), else at the last hidden q.
    sigma_w2 = pred.sigma_w2[1] if len(shapes) >= 3 else pred.sigma_w2[0]
    v_star, chi_star, edge = _phase(act_key, phi, slope, sigma_w2, sigma_b2, b0)
    if v_star is None:
        last_hidden = pred.q[-2] - b0**2 if len(pred.q) >= 2 else pred.q[0] - b0**2
        chi_star = float(theory.chi1(sigma_w2, last_hidden, b0, slope))
    return {"q": pred.q, "chi": pred.chi, "sigma_w2": sigma_w2, "sigma_b2": sigma_b2,
            "bias": b0, "q_star": None if v_star is None else v_star + b0**2,
            "chi1": chi_star, "phase": theory.phase(chi_star), "critical": edge}


_phases: dict[tuple, tuple] = {}
_edges: dict[tuple, dict] = {}


def _phase(act_key: Any, phi, slope, sigma_w2: float, sigma_b2: float, b0: float):
    """(v*, chi_1 at v*, the edge of chaos) of the hidden map from v = 1 (no member's data:
    once per sweep); v* and chi_1 None where the map grows without bound."""
    key = (act_key, sigma_w2, sigma_b2, b0)
    if key not in _phases:
        v_star = theory.fixed_point(sigma_w2, sigma_b2, b0, phi)
        _phases[key] = (v_star, None if v_star is None else float(theory.chi1(sigma_w2, v_star, b0, slope)))
    if key[:1] + key[2:] not in _edges:
        _edges[key[:1] + key[2:]] = dataclasses.asdict(theory.critical(sigma_b2, b0, phi, slope))
    return (*_phases[key], _edges[key[:1] + key[2:]])
