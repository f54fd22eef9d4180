"""Disconnectivity graphs (trees) of minima joined by transition states, as the Wales
group's disconnectionDPS draws them.

The landscape is a graph: minima ``e_min (N,)`` are its nodes, transition states
``e_ts (T,)`` between minima ``min1 (T,)`` and ``min2 (T,)`` (indices from 0) its edges.
At an energy level ``E`` two minima are in one basin when a path of transition states
all below ``E`` joins them: the basins are the connected components of the graph of the
minima below ``E`` and the edges below ``E`` (comparisons strict). Lowering ``E``
through evenly spaced levels splits basins; the tree records which basin at one level
holds which at the next, down to each minimum at its own energy.

:func:`select` keeps what enters the graph (as disconnectionDPS does: the component of
one reference minimum, and minima with enough transition states), :func:`levels` spaces
the levels, :func:`basins` labels the basins at every level, :func:`tree` builds the
tree and :func:`figure` draws it; :func:`from_tables` goes from nnkit's tables of minima
and transition states to the tree in one call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import UserError

#: levels when :func:`levels` is not told how many
COUNT = 20


@dataclass
class Node:
    """One basin at one level, or a leaf: one minimum at its own energy.

    ``level`` is the index of the node's level in :attr:`Tree.levels` (-1 for a leaf),
    ``energy`` that level's energy (a leaf's: its minimum's), ``minima`` the minima in
    the basin (lowest energy first), ``children`` and ``parent`` (-1 for a root) indices
    into :attr:`Tree.nodes`, and ``x`` the node's horizontal position for drawing."""

    level: int
    energy: float
    minima: tuple[int, ...]
    children: tuple[int, ...] = ()
    parent: int = -1
    x: float = 0.0

    @property
    def leaf(self) -> bool:
        return self.level < 0


@dataclass
class Tree:
    """A disconnectivity tree: ``levels (L,)`` (descending), the ``nodes`` (every basin
    at every level, then one leaf per minimum) and the ``roots`` (the basins at the
    highest level), left to right.

    Layout: the children of a node (and the roots) are ordered by their lowest minimum
    (lowest energy leftmost, ties by index); leaves sit at x = 0, 1, 2, ... in that
    depth-first order, so that the leaves of a basin are adjacent, and a node sits
    halfway between its outermost children."""

    levels: np.ndarray
    nodes: list[Node]
    roots: tuple[int, ...]

    def leaves(self) -> list[int]:
        """The minima of the leaves, left to right."""
        leaves = [node for node in self.nodes if node.leaf]
        return [node.minima[0] for node in sorted(leaves, key=lambda node: node.x)]

    def merges(self) -> list[tuple[float, list[tuple[int, ...]]]]:
        """Where basins meet: ``(energy, [minima of each child, left to right])`` for
        every node of more than one child, from the highest level down."""
        return [(node.energy, [self.nodes[c].minima for c in node.children])
                for node in self.nodes if len(node.children) > 1]  # fmt: skip


def select(e_min, e_ts, min1, min2, reference: int | None = None, min_connections: int = 1):
    """Which minima and transition states enter the tree, as boolean masks ``(N,)`` and
    ``(T,)``.

    Kept: the minima of the connected component of ``reference`` (default: the lowest
    minimum) that have at least ``min_connections`` transition states to kept minima,
    pruned until nothing changes (disconnectionDPS's CONNECTMIN): removing a minimum
    can leave a neighbour with too few, or cut the component. A transition state is kept
    when it joins two different kept minima (one from a minimum to itself never is);
    each of several between one pair counts as a connection."""
    e_min, e_ts, min1, min2 = _graph(e_min, e_ts, min1, min2)
    n = e_min.size
    if n == 0:
        raise UserError("there are no minima to select from")
    reference = int(np.argmin(e_min)) if reference is None else int(reference)
    if not 0 <= reference < n:
        raise UserError(f"reference = {reference} is not a minimum (0..{n - 1})")
    if min_connections < 0:
        raise UserError(f"min_connections = {min_connections} must be >= 0")
    proper = min1 != min2
    keep = np.ones(n, dtype=bool)
    while True:
        edges = proper & keep[min1] & keep[min2]
        counts = np.bincount(min1[edges], minlength=n) + np.bincount(min2[edges], minlength=n)
        new = keep & (counts >= min_connections)
        if not new[reference]:
            raise UserError(f"the reference minimum {reference} has {counts[reference]} transition states to the "
                            f"minima kept, fewer than min_connections = {min_connections}")  # fmt: skip
        edges = proper & new[min1] & new[min2]
        component = _components(n, min1[edges], min2[edges])
        new &= component == component[reference]
        if np.array_equal(new, keep):
            return keep, proper & keep[min1] & keep[min2]
        keep = new


def levels(e_min, e_ts, first: float | None = None, spacing: float | None = None, count: int | None = None):
    """Evenly spaced energy levels ``(count,)``, highest first, as disconnectionDPS
    spaces them: ``first, first - spacing, ..., first - (count - 1) * spacing``.

    Defaults: ``count`` :data:`COUNT` (20); ``first`` just above the highest transition
    state of ``e_ts`` (by a millionth of its height above the lowest minimum; the
    highest minimum where there are no transition states), so that the top level holds
    every connected minimum in one basin; ``spacing`` ``(first - min(e_min)) / count``,
    so that the lowest level lies one spacing above the lowest minimum."""
    e_min = np.asarray(e_min, dtype=float)
    e_ts = np.asarray(e_ts, dtype=float)
    if e_min.size == 0 or not np.isfinite(e_min).all() or not np.isfinite(e_ts).all():
        raise UserError("levels need at least one minimum, and finite energies")
    count = COUNT if count is None else int(count)
    if count < 1:
        raise UserError(f"count = {count} levels: at least 1")
    bottom = float(e_min.min())
    if first is None:
        top = float(e_ts.max()) if e_ts.size else float(e_min.max())
        height = top - bottom
        first = top + 1e-6 * (height if height > 0 else max(1.0, abs(top)))
    first = float(first)
    if spacing is None:
        spacing = (first - bottom) / count
    if not (np.isfinite(first) and spacing > 0 and np.isfinite(spacing)):
        raise UserError(f"levels from first = {first} with spacing {spacing}: the spacing must be > 0 (give a "
                        f"first level above the lowest minimum, {bottom})")  # fmt: skip
    return first - spacing * np.arange(count)


def basins(e_min, e_ts, min1, min2, levels, minima=None) -> np.ndarray:
    """The basin of every minimum at every level, ``(L, N)`` ints, for ``levels (L,)``
    strictly descending.

    At level ``E`` the basins are the connected components of the minima below ``E``
    through the transition states below ``E``; a minimum at or above ``E`` (or outside
    the mask ``minima (N,)``, when given) is in none: -1. Basins are numbered 0, 1, ...
    at each level by their lowest minimum (lowest energy first, ties by index)."""
    e_min, e_ts, min1, min2 = _graph(e_min, e_ts, min1, min2)
    levels = _descending(levels)
    n = e_min.size
    allowed = np.ones(n, dtype=bool) if minima is None else _mask(minima, n)
    order = np.lexsort((np.arange(n), e_min))  # lowest energy first, ties by index
    proper = min1 != min2
    out = np.full((levels.size, n), -1, dtype=np.int64)
    for k, level in enumerate(levels):
        below = allowed & (e_min < level)
        edges = proper & (e_ts < level) & below[min1] & below[min2]
        component = _components(n, min1[edges], min2[edges])
        ranked = order[below[order]]
        found, first = np.unique(component[ranked], return_index=True)
        label = np.empty(n, dtype=np.int64)
        label[found[np.argsort(first)]] = np.arange(found.size)
        out[k, below] = label[component[below]]
    return out


def tree(e_min, e_ts, min1, min2, levels, minima=None) -> Tree:
    """The disconnectivity tree of the minima ``e_min (N,)`` (only those of the mask
    ``minima (N,)``, when given) and transition states ``e_ts (T,)`` between ``min1
    (T,)`` and ``min2 (T,)`` at ``levels (L,)`` (strictly descending).

    One node per basin of :func:`basins` at each level; its children are the basins at
    the next level that it holds, and a leaf for each of its minima that lies at or
    above the next level (at the lowest level: for each of its minima). Minima at or
    above the highest level are in no node. Layout as :class:`Tree` says."""
    e_min = np.asarray(e_min, dtype=float)
    labels = basins(e_min, e_ts, min1, min2, levels, minima=minima)
    levels = _descending(levels)
    nodes: list[Node] = []
    at: list[np.ndarray] = []  # node index of each basin label, per level
    for k, row in enumerate(labels):
        members = _members(row, e_min)
        at.append(np.arange(len(nodes), len(nodes) + len(members)))
        nodes += [Node(k, float(levels[k]), m) for m in members]
    for k, row in enumerate(labels):
        below = labels[k + 1] if k + 1 < len(labels) else np.full_like(row, -1)
        for label, index in enumerate(at[k]):
            node = nodes[index]
            inner = [int(at[k + 1][b]) for b in dict.fromkeys(below[list(node.minima)]) if b >= 0]
            for m in (m for m in node.minima if below[m] < 0):
                inner.append(len(nodes))
                nodes.append(Node(-1, float(e_min[m]), (m,)))
            for child in inner:
                nodes[child].parent = index
            node.children = tuple(sorted(inner, key=lambda c: _key(nodes[c], e_min)))
    roots = tuple(sorted(at[0].tolist(), key=lambda c: _key(nodes[c], e_min))) if len(at) else ()
    _place(nodes, roots)
    return Tree(levels=levels, nodes=nodes, roots=roots)


def figure(tree: Tree, ax=None, labels=None, energy_label: str = "loss"):
    """Draw ``tree`` as disconnectionDPS does: each node a vertical line from its
    parent's level down to its own (a leaf: down to its minimum's energy), the children
    of a node joined by a horizontal line at its level; a stub above each root. The
    y axis is the energy (``energy_label``), the x axis hidden.

    ``labels`` names the leaves: True for the minima's indices, or a sequence (by
    minimum index) or mapping of minimum to text. Into ``ax`` when given (returns
    ``ax.figure``), else a new :class:`matplotlib.figure.Figure`."""
    from matplotlib.collections import LineCollection

    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(6.4, 4.4), layout="constrained").subplots()
    nodes, lv = tree.nodes, tree.levels
    high = float(lv[0]) if lv.size else 0.0
    low = min([node.energy for node in nodes], default=float(lv[-1]) if lv.size else 0.0)
    stub = float(lv[0] - lv[1]) if lv.size > 1 else 0.05 * ((high - low) or max(1.0, abs(high)))
    segments = [[(nodes[r].x, high + stub), (nodes[r].x, nodes[r].energy)] for r in tree.roots]
    for node in nodes:
        xs = [nodes[c].x for c in node.children]
        if len(xs) > 1:
            segments.append([(min(xs), node.energy), (max(xs), node.energy)])
        segments += [[(nodes[c].x, node.energy), (nodes[c].x, nodes[c].energy)] for c in node.children]
    ax.add_collection(LineCollection(segments, colors="black", linewidths=0.8))
    if labels is not None and labels is not False:
        for node in nodes:
            if node.leaf:
                m = node.minima[0]
                text = str(m) if labels is True else str(labels[m])
                ax.annotate(text, (node.x, node.energy), textcoords="offset points", xytext=(0, -3), ha="center",
                            va="top", rotation=90, fontsize=6)  # fmt: skip
    xs = [node.x for node in nodes] or [0.0]
    ax.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
    pad = 0.04 * (high + stub - low)
    ax.set_ylim(low - pad * (3 if labels is not None and labels is not False else 1), high + stub + pad)
    ax.xaxis.set_visible(False)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_ylabel(energy_label, fontsize=8)
    ax.tick_params(labelsize=7)
    return ax.figure


def from_tables(minima: pd.DataFrame, transition_states: pd.DataFrame, reference=None, min_connections: int = 1,
                first: float | None = None, spacing: float | None = None, count: int | None = None) -> Tree:
    """The tree of a table of ``minima`` (column ``loss``) and of ``transition_states``
    (columns ``loss``, ``minimum_a``, ``minimum_b``): :func:`select`, then
    :func:`levels` over what was selected, then :func:`tree`.

    ``minimum_a``, ``minimum_b`` and ``reference`` are ids of the ``minimum`` column of
    ``minima`` where it has one, else row positions; the tree's minima are row
    positions (so ``labels=minima["minimum"].tolist()`` labels the leaves by id)."""
    for frame, name, columns in ((minima, "minima", ["loss"]),
                                 (transition_states, "transition states", ["loss", "minimum_a", "minimum_b"])):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise UserError(f"the table of {name} has no column {', '.join(missing)}")
    e_min = minima["loss"].to_numpy(dtype=float)
    e_ts = transition_states["loss"].to_numpy(dtype=float)
    ends = [transition_states[c].to_numpy() for c in ("minimum_a", "minimum_b")]
    if "minimum" in minima.columns:
        ids = minima["minimum"].tolist()
        position = {key: k for k, key in enumerate(ids)}
        if len(position) != len(ids):
            raise UserError("the table of minima repeats an id in its column minimum")
        lookup = list(ends) + ([[reference]] if reference is not None else [])
        unknown = [key for column in lookup for key in column if key not in position]
        if unknown:
            raise UserError(f"minimum {unknown[0]} is not in the column minimum of the table of minima")
        ends = [np.array([position[key] for key in column], dtype=np.int64) for column in ends]
        reference = position[reference] if reference is not None else None
    keep_min, keep_ts = select(e_min, e_ts, ends[0], ends[1], reference=reference, min_connections=min_connections)
    lv = levels(e_min[keep_min], e_ts[keep_ts], first=first, spacing=spacing, count=count)
    return tree(e_min, e_ts[keep_ts], ends[0][keep_ts], ends[1][keep_ts], lv, minima=keep_min)


# -- helpers --------------------------------------------------------------------------


def _graph(e_min, e_ts, min1, min2):
    """The graph's arrays, checked: energies finite, one index pair per transition
    state, indices of minima from 0."""
    e_min, e_ts = np.asarray(e_min, dtype=float), np.asarray(e_ts, dtype=float)
    if e_min.ndim != 1 or e_ts.ndim != 1:
        raise UserError(f"e_min and e_ts must be one-dimensional, not of shapes {e_min.shape} and {e_ts.shape}")
    if not (np.isfinite(e_min).all() and np.isfinite(e_ts).all()):
        raise UserError("the energies of the minima and transition states must be finite")
    ends = []
    for name, values in (("min1", min1), ("min2", min2)):
        values = np.asarray(values)
        if values.shape != e_ts.shape:
            raise UserError(f"{name} must be of the shape of e_ts, {e_ts.shape}, not {values.shape}")
        if values.size and (values.dtype.kind not in "iuf" or np.any(values != np.round(values))):
            raise UserError(f"{name} must hold indices of minima (whole numbers)")
        values = values.astype(np.int64)
        bad = (values < 0) | (values >= e_min.size)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise UserError(f"{name}[{k}] = {values[k]} is not a minimum (0..{e_min.size - 1})")
        ends.append(values)
    return e_min, e_ts, ends[0], ends[1]


def _descending(levels) -> np.ndarray:
    levels = np.asarray(levels, dtype=float)
    if levels.ndim != 1 or not np.isfinite(levels).all() or np.any(np.diff(levels) >= 0):
        raise UserError("levels must be finite and strictly descending (highest first)")
    return levels


def _mask(minima, n) -> np.ndarray:
    minima = np.asarray(minima)
    if minima.dtype != bool or minima.shape != (n,):
        raise UserError(f"minima must be a boolean mask of shape ({n},)")
    return minima


def _components(n, a, b) -> np.ndarray:
    """The connected component of each of ``n`` nodes joined by edges ``a``-``b``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(a.size, dtype=np.int8), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _members(row, e_min) -> list[tuple[int, ...]]:
    """The minima of each basin label of ``row`` (0, 1, ...), lowest energy first."""
    inside = np.flatnonzero(row >= 0)
    inside = inside[np.lexsort((inside, e_min[inside]))]
    groups = [[] for _ in range(int(row.max()) + 1 if inside.size else 0)]
    for m in inside:
        groups[row[m]].append(int(m))
    return [tuple(g) for g in groups]


def _key(node, e_min):
    lowest = node.minima[0]
    return (float(e_min[lowest]), lowest)


def _place(nodes, roots) -> None:
    """x of every node: leaves 0, 1, 2, ... depth first, a node halfway between its
    outermost children."""
    stack, seen, nxt = [(r, False) for r in reversed(roots)], set(), 0.0
    while stack:
        index, done = stack.pop()
        node = nodes[index]
        if not node.children:
            node.x, nxt = nxt, nxt + 1
        elif done:
            node.x = (nodes[node.children[0]].x + nodes[node.children[-1]].x) / 2
        elif index not in seen:
            seen.add(index)
            stack.append((index, True))
            stack += [(c, False) for c in reversed(node.children)]
