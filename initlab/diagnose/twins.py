"""Duplicate hidden units (the ``symmetric_weights`` fact, :func:`duplicate_units`), bounded
in time and memory at any width: 10,000 narrow nets or one of width 100,000 in under a second.
"""

import math
import sys
from typing import Any

# All pairs of distinct units up to this many values (~0.1 s), else projection neighbours.
TWIN_ALL_PAIRS_WORK = 1 << 26
TWIN_SPREAD_WORK = 1 << 26  # the same bound for the largest difference among units with a twin
TWIN_NEIGHBOURS = 64
# Up to this many n·n·d values in plain Python floats (a torch op costs ~10 us).
TWIN_PYTHON_WORK = 1 << 11
TWIN_PROJECTION_SEED = 20240607  # fixed: the same record always gets the same answer


def duplicate_units(state: dict[str, Any], layer: str, next_layer: str, rtol: float):
    """(units with a near-twin, units, largest relative difference between twins).

    A unit is its incoming weights, bias and outgoing weights; twins differ nowhere by more
    than ``rtol`` times the pair's larger |value|; a non-finite unit has none. Never the
    n×n matrix: bit-identical units are grouped by ``torch.unique``; the m distinct ones are
    compared pair by pair when m·m·d <= TWIN_ALL_PAIRS_WORK, else in the order of a fixed
    random projection p = u·r (twins have |p_i - p_j| <= ||r||_1 rtol max(s_i, s_j)), each
    with at most TWIN_NEIGHBOURS following units in its window: it misses only twins with
    more than that many distinct units crowding their window.
    """
    incoming, bias, outgoing = state[f"{layer}.weight"], state[f"{layer}.bias"], state[f"{next_layer}.weight"]
    n_units, d = incoming.shape[0], incoming.shape[1] + 1 + outgoing.shape[0]
    if n_units * n_units * d <= TWIN_PYTHON_WORK:
        return _duplicate_units_small(incoming.tolist(), bias.tolist(), outgoing.T.tolist(), rtol)
    import torch

    bias = bias[:, None]
    units = torch.cat((incoming, bias, outgoing.T), dim=1).double()
    finite = units.isfinite().all(dim=1)
    distinct, counts = torch.unique(units[finite], dim=0, return_counts=True)
    has_twin = counts >= 2  # per distinct row
    m = distinct.shape[0]
    spread = 0.0
    if m >= 2 and m * m * d <= TWIN_ALL_PAIRS_WORK:
        found, spread = _twins_all_pairs(distinct, rtol)
        has_twin |= found
    elif m >= 2:
        order, found, spread = _twins_by_projection(distinct, rtol)
        has_twin[order] |= found
        flagged = distinct[order][found]
        if 2 <= flagged.shape[0] and flagged.shape[0] ** 2 * d <= TWIN_SPREAD_WORK:
            spread = max(spread, _twins_all_pairs(flagged, rtol)[1])
    return int(counts[has_twin].sum()), n_units, spread


def _duplicate_units_small(incoming: list, bias: list, outgoing: list, rtol: float):
    """:func:`duplicate_units` of a narrow layer, every pair compared in Python floats
    (doubles, as the torch path computes: the same answer, tests/test_scale.py)."""
    units = [w + [b] + o for w, b, o in zip(incoming, bias, outgoing)]
    rows = [u for u in units if all(math.isfinite(x) for x in u)]
    sizes = [max(abs(x) for x in u) for u in rows]
    has_twin = [False] * len(rows)
    spread = 0.0
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            distance = max(abs(a - b) for a, b in zip(rows[i], rows[j]))
            pair_size = max(sizes[i], sizes[j])
            if distance <= rtol * pair_size:
                has_twin[i] = has_twin[j] = True
                spread = max(spread, distance / max(pair_size, sys.float_info.min))
    return sum(has_twin), len(units), spread


def _pair_twins(a, size_a, b, size_b, rtol: float):
    """Elementwise over pairs (a[k], b[k]) broadcast: (twins mask, relative difference)."""
    import torch

    distance = (a - b).abs().amax(dim=-1)
    pair_size = torch.maximum(size_a, size_b)
    relative = distance / pair_size.clamp_min(torch.finfo(distance.dtype).tiny)
    return distance <= rtol * pair_size, relative


def _twins_all_pairs(rows, rtol: float):
    """(which rows have a twin among ``rows``, largest relative difference of a twin pair):
    every pair compared that a random projection does not rule out (twins' projections lie
    within :func:`_projection`'s window), a block of rows at a time."""
    import torch

    n = rows.shape[0]
    size = rows.abs().amax(dim=1)
    proj, window = _projection(rows, size, rtol)
    found = torch.zeros(n, dtype=torch.bool)
    spread = 0.0
    block = max(1, (1 << 22) // n)
    for start in range(0, n, block):
        stop = min(start + block, n)
        near = (proj[start:stop, None] - proj[None, :]).abs() <= torch.maximum(
            window[start:stop, None], window[None, :])
        near[torch.arange(stop - start), torch.arange(start, stop)] = False  # not itself
        pairs_a, pairs_b = near.nonzero(as_tuple=True)
        pairs_a = pairs_a + start
        # Nearly equal units leave most pairs in: gather their rows a bounded slice at a time.
        step = max(1, (1 << 22) // rows.shape[1])
        for k in range(0, len(pairs_a), step):
            a, b = pairs_a[k:k + step], pairs_b[k:k + step]
            twins, relative = _pair_twins(rows[a], size[a], rows[b], size[b], rtol)
            found[a[twins]] = True
            if twins.any():
                spread = max(spread, float(relative[twins].max()))
    return found, spread


def _projection(rows, size, rtol: float):
    """(rows @ r for a fixed random r, the window within which a twin's projection lies:
    ||r||_1 rtol max(s_i, s_j), with max(s_i, s_j) <= s_i / (1 - rtol), plus rounding)."""
    import torch

    r = torch.randn(rows.shape[1], generator=torch.Generator().manual_seed(TWIN_PROJECTION_SEED),
                    dtype=torch.float64)
    bound = size / (1 - rtol) if rtol < 1 else torch.full_like(size, float(size.max()))
    window = r.abs().sum() * bound * (rtol + 4 * rows.shape[1] * torch.finfo(torch.float64).eps)
    return rows @ r, window


def _twins_by_projection(rows, rtol: float):
    """(projection order, which rows of that order have a twin found, largest relative
    difference of the pairs found): see :func:`duplicate_units`, step 3."""
    import torch

    m = rows.shape[0]
    proj, _ = _projection(rows, rows.abs().amax(dim=1), rtol)
    order = torch.argsort(proj)
    rows = rows[order]
    size = rows.abs().amax(dim=1)
    proj, window = _projection(rows, size, rtol)
    found = torch.zeros(m, dtype=torch.bool)
    active = torch.arange(m)
    spread = 0.0
    for k in range(1, min(TWIN_NEIGHBOURS, m - 1) + 1):
        active = active[active + k < m]
        # Projections are sorted: once the k-th neighbour is out of a unit's window,
        # every later one is too.
        active = active[proj[active + k] - proj[active] <= window[active]]
        if active.numel() == 0:
            break
        other = active + k
        twins, relative = _pair_twins(rows[active], size[active], rows[other], size[other], rtol)
        if twins.any():
            found[active[twins]] = True
            found[other[twins]] = True
            spread = max(spread, float(relative[twins].max()))
    return order, found, spread


