"""Symmetries of the networks of a :class:`~nnkit.core.model.Model`: transformations of the
parameters that leave the network's function unchanged, a canonical representative of
each orbit, and alignment of networks onto a reference.

Per hidden layer ``l`` with ``k`` units, unit ``j`` has *incoming* weights
``W_l[:, j]`` and bias ``b_l[j]`` and *outgoing* weights ``W_{l+1}[j, :]`` (``W_out[j]``
for the last hidden layer). The symmetries handled are, per layer:

* permutations of the units (always allowed);
* sign flips (negate incoming weights, bias and outgoing weights) for odd activations
  (``Activation.flip == "odd"``: ``tanh``, ``linear``); for ``sigmoid``
  (``flip == "shift"``), since ``sigmoid(-z) = 1 - sigmoid(z)``, a flip also adds the
  unit's outgoing weights to the next bias (``b_{l+1}``, or ``b_out``), so it needs
  that bias to exist;
* positive rescaling (incoming weights and bias times ``c > 0``, outgoing divided by
  ``c``) for positively homogeneous activations (``Activation.homogeneous``: ``relu``,
  ``leaky_relu``, ``linear``).

Flips and rescaling change the outgoing weights, so neither applies to the last hidden
layer when the output weights are fixed (``layout.output_trained`` False). A linear
layer has a larger symmetry group (any invertible matrix); only the part above is used.

Shapes: ``theta (R, P)``, float64; a single row ``(P,)`` is taken as ``R = 1``.
"""

from __future__ import annotations

import numpy as np


def _why_no_flip(model, layer) -> str:
    """Why hidden layer ``layer`` (1-based) has no sign flips, or ``""`` if it has."""
    lay, act = model.layout, model.activation(layer)
    last = layer == lay.depth
    if act.flip is None:
        return f"{act.name} is not odd"
    if last and not lay.output_trained:
        return "the output weights are fixed"
    if act.flip == "shift" and not (lay.output_bias if last else lay.bias[layer]):
        nxt = "the output layer" if last else f"layer {layer + 1}"
        return f"a {act.name} flip shifts the next bias, and {nxt} has no bias"
    return ""


def _why_no_scale(model, layer) -> str:
    """Why hidden layer ``layer`` (1-based) has no rescaling, or ``""`` if it has."""
    lay, act = model.layout, model.activation(layer)
    if not act.homogeneous:
        return f"{act.name} is not positively homogeneous"
    if layer == lay.depth and not lay.output_trained:
        return "the output weights are fixed"
    return ""


def allowed(model, layer: int) -> tuple[bool, bool]:
    """``(flips, scales)``: whether hidden layer ``layer`` (1-based) has sign flips and
    positive rescaling."""
    return not _why_no_flip(model, layer), not _why_no_scale(model, layer)


def _rows(model, theta):
    """A float64 copy of ``theta`` as ``(R, P)``."""
    t = np.array(theta, dtype=np.float64, ndmin=2)
    if t.ndim != 2 or t.shape[1] != model.size:
        raise ValueError(f"theta must have shape (R, {model.size}), got {np.shape(theta)}")
    return t


def _outgoing(lay, t, layer):
    """Views of the outgoing weights ``(R, k, m)`` of the units of ``layer`` and of the
    next bias ``(R, m)``; each None where absent (m = 1 for the output layer)."""
    if layer < lay.depth:
        return lay.weights(t, layer + 1), lay.biases(t, layer + 1)
    W = lay.view(t, "W_out")[:, :, None] if lay.output_trained else None
    b = lay.view(t, "b_out")[:, None] if lay.output_bias else None
    return W, b


def _incoming(lay, t, layer):
    """Incoming weights then bias of each unit of ``layer``: ``(R, k, fan_in [+ 1])``."""
    V = np.swapaxes(lay.weights(t, layer), 1, 2)
    b = lay.biases(t, layer)
    return V.copy() if b is None else np.concatenate([V, b[:, :, None]], axis=2)


def _scale(lay, t, layer, c):
    """In place: unit ``j`` of row ``r`` rescaled by ``c[r, j] > 0``; ``c (R, k)``."""
    W = lay.weights(t, layer)
    W *= c[:, None, :]
    b = lay.biases(t, layer)
    if b is not None:
        b *= c
    out, _ = _outgoing(lay, t, layer)
    if out is not None:
        out /= c[:, :, None]


def _flip(model, t, layer, s):
    """In place: unit ``j`` of row ``r`` flipped where ``s[r, j] = -1``; ``s (R, k)``."""
    lay = model.layout
    out, out_bias = _outgoing(lay, t, layer)
    if model.activation(layer).flip == "shift":
        out_bias += np.sum((s < 0)[:, :, None] * out, axis=1)
    W = lay.weights(t, layer)
    W *= s[:, None, :]
    b = lay.biases(t, layer)
    if b is not None:
        b *= s
    if out is not None:
        out *= s[:, :, None]


def _permute(lay, t, layer, p):
    """In place: unit ``i`` of row ``r`` becomes old unit ``p[r, i]``; ``p (R, k)``."""
    W = lay.weights(t, layer)
    W[...] = np.take_along_axis(W, p[:, None, :], axis=2)
    b = lay.biases(t, layer)
    if b is not None:
        b[...] = np.take_along_axis(b, p, axis=1)
    out, _ = _outgoing(lay, t, layer)
    if out is not None:
        out[...] = np.take_along_axis(out, p[:, :, None], axis=1)


def _per_layer(arrays, name, layer, depth, R, k):
    """Entry ``layer`` (1-based) of ``arrays`` (None or one per hidden layer) as ``(R, k)``."""
    if arrays is None:
        return None
    if len(arrays) != depth:
        raise ValueError(f"{name} needs one entry per hidden layer ({depth})")
    a = arrays[layer - 1]
    if a is None:
        return None
    try:
        return np.broadcast_to(np.asarray(a), (R, k))
    except ValueError:
        raise ValueError(
            f"{name}[{layer - 1}] must have shape ({k},) or ({R}, {k}), got {np.shape(a)}"
        ) from None


def transform(model, theta, perms=None, flips=None, scales=None):
    """Apply explicit symmetries to every row of ``theta (R, P)``; returns a new ``(R, P)``.

    ``perms``, ``flips`` and ``scales`` are None or one entry per hidden layer, each None
    (identity) or an array of shape ``(k_l,)`` (all rows) or ``(R, k_l)`` (per row):

    * ``perms``: integer permutations; new unit ``i`` is old unit ``perms[l][i]``;
    * ``flips``: signs ``+1`` / ``-1`` per unit (``-1`` flips);
    * ``scales``: factors ``> 0`` per unit (incoming times, outgoing divided by it).

    Layers are transformed from the first to the last; within a layer units are
    rescaled, then flipped, then permuted, so flips and scales index the units before
    permuting. Raises ValueError for a flip or scale other than 1 where the layer does
    not allow it (see :func:`allowed`) and for malformed entries.
    """
    t = _rows(model, theta)
    lay = model.layout
    R = t.shape[0]
    for layer, k in enumerate(lay.widths, start=1):
        act = model.activations[layer - 1]
        p = _per_layer(perms, "perms", layer, lay.depth, R, k)
        s = _per_layer(flips, "flips", layer, lay.depth, R, k)
        c = _per_layer(scales, "scales", layer, lay.depth, R, k)
        if c is not None:
            if not np.all(np.isfinite(c) & (c > 0)):
                raise ValueError(f"layer {layer}: scales must be finite and positive")
            if np.any(c != 1):
                if why := _why_no_scale(model, layer):
                    raise ValueError(f"layer {layer} ({act}) cannot be rescaled: {why}")
                _scale(lay, t, layer, c.astype(np.float64))
        if s is not None:
            if not np.all(np.abs(s) == 1):
                raise ValueError(f"layer {layer}: flips must be +1 or -1")
            if np.any(s < 0):
                if why := _why_no_flip(model, layer):
                    raise ValueError(f"layer {layer} ({act}) has no sign flips: {why}")
                _flip(model, t, layer, s.astype(np.float64))
        if p is not None:
            if not np.issubdtype(p.dtype, np.integer) or np.any(np.sort(p, 1) != np.arange(k)):
                raise ValueError(f"layer {layer}: perms must be permutations of 0..{k - 1}")
            _permute(lay, t, layer, p)
    return t


def random_symmetry(model, theta, rng):
    """A random allowed symmetry of each row of ``theta (R, P)``, drawn independently per
    row: random permutations, random signs where flips are allowed and scales uniform in
    ``[0.3, 3]`` where rescaling is; ``rng`` a ``numpy.random.Generator``. Returns ``(R, P)``."""
    t = _rows(model, theta)
    R = t.shape[0]
    perms, flips, scales = [], [], []
    for layer, k in enumerate(model.layout.widths, start=1):
        flip_ok, scale_ok = allowed(model, layer)
        perms.append(rng.permuted(np.tile(np.arange(k), (R, 1)), axis=1))
        flips.append(rng.choice([-1.0, 1.0], size=(R, k)) if flip_ok else None)
        scales.append(rng.uniform(0.3, 3.0, size=(R, k)) if scale_ok else None)
    return transform(model, t, perms, flips, scales)


def _nonzero(n):
    return np.where(n > 0, n, 1.0)


def canonical(model, theta):
    """A canonical representative of each row of ``theta (R, P)``: ``(R, P)``.

    Each hidden layer, from the first to the last (so a layer's incoming weights are
    already in their final order and scale), is put in normal form in three steps on
    the unit's incoming vector ``v_j = (W_l[:, j], b_l[j])`` (bias last, when present):

    1. where rescaling is allowed, ``v_j`` is scaled to unit Euclidean norm, the scale
       moving to the outgoing weights (units with ``v_j = 0`` are left as they are);
    2. where flips are allowed, the unit is flipped so that the entry of ``v_j`` with the
       largest magnitude (the first such on exact ties) is positive; this ``argmax |v|``
       does not change under a flip, so the rule is stable;
    3. the units are sorted lexicographically by ``v_j`` (first input's weight first),
       with a stable sort.

    Two rows related by a symmetry get the same form whenever no two units of a layer
    have (near-)equal keys: generic networks. Units with equal incoming vectors (e.g.
    duplicated or dead units) keep their relative order. ``canonical`` is idempotent up
    to rounding.
    """
    t = _rows(model, theta)
    lay = model.layout
    for layer in range(1, lay.depth + 1):
        flip_ok, scale_ok = allowed(model, layer)
        if scale_ok:
            n = np.linalg.norm(_incoming(lay, t, layer), axis=2)
            _scale(lay, t, layer, 1.0 / _nonzero(n))
        if flip_ok:
            V = _incoming(lay, t, layer)
            big = np.take_along_axis(V, np.abs(V).argmax(axis=2)[:, :, None], axis=2)[:, :, 0]
            _flip(model, t, layer, np.where(big < 0, -1.0, 1.0))
        V = _incoming(lay, t, layer)
        _permute(lay, t, layer, np.lexsort(np.moveaxis(V, 2, 0)[::-1], axis=-1))
    return t


def distance(model, theta_a, theta_b):
    """Euclidean distance between the canonical forms of ``theta_a`` and ``theta_b``
    (``(R, P)`` each, or one of them ``(P,)``): ``(R,)``. Zero for networks related by a
    symmetry; it jumps where a small change reorders the canonical units, so to compare
    nearby networks ``norm(align(model, a, b) - a)`` is the smoother measure."""
    return np.linalg.norm(canonical(model, theta_a) - canonical(model, theta_b), axis=1)


def _features(lay, t, layer, scale_ok):
    """Matching features per unit ``(R, k, m)`` and the units' norms ``(R, k)``.

    The features are the incoming vector (divided by its norm where rescaling applies)
    and, for the last hidden layer with a trained output, the output weight (times the
    norm): all of them change sign under a flip. Outgoing weights of earlier layers
    are left out, as the next layer is not yet aligned.
    """
    V = _incoming(lay, t, layer)
    n = _nonzero(np.linalg.norm(V, axis=2)) if scale_ok else np.ones(V.shape[:2])
    F = V / n[:, :, None]
    if layer == lay.depth and lay.output_trained:
        F = np.concatenate([F, (lay.view(t, "W_out") * n)[:, :, None]], axis=2)
    return F, n


def align(model, theta_ref, theta):
    """The symmetric copy of each row of ``theta (R, P)`` closest to ``theta_ref (P,)``:
    ``(R, P)``.

    Layer by layer from the first, the units of each row are matched to the reference's
    units by :func:`scipy.optimize.linear_sum_assignment` on the squared distances of
    their :func:`_features` (incoming weights and bias of the already aligned layer
    below, normalised where rescaling applies, plus the output weight for the last
    layer); where flips apply each pair costs the smaller of the unflipped and flipped
    distance. The row is then permuted, flipped where that was cheaper and, where
    rescaling applies, scaled so that each unit's incoming norm equals its reference
    unit's. A symmetric copy of a generic network is aligned back onto it exactly (up
    to rounding), for any depth.
    """
    from scipy.optimize import linear_sum_assignment  # here: import nnkit stays light

    lay = model.layout
    ref = _rows(model, theta_ref)
    if ref.shape[0] != 1:
        raise ValueError("theta_ref must be one network, shape (P,)")
    t = _rows(model, theta)
    for layer in range(1, lay.depth + 1):
        flip_ok, scale_ok = allowed(model, layer)
        F_ref, n_ref = _features(lay, ref, layer, scale_ok)
        F, n = _features(lay, t, layer, scale_ok)
        cost = np.sum((F_ref[:, :, None, :] - F[:, None, :, :]) ** 2, axis=3)  # (R, k_ref, k)
        flipped = np.zeros(cost.shape, dtype=bool)
        if flip_ok:
            cost_flipped = np.sum((F_ref[:, :, None, :] + F[:, None, :, :]) ** 2, axis=3)
            flipped = cost_flipped < cost
            cost = np.minimum(cost, cost_flipped)
        p = np.stack([linear_sum_assignment(c)[1] for c in cost])
        _permute(lay, t, layer, p)
        if flip_ok:
            s = np.take_along_axis(flipped, p[:, :, None], axis=2)[:, :, 0]
            _flip(model, t, layer, np.where(s, -1.0, 1.0))
        if scale_ok:
            _scale(lay, t, layer, n_ref / np.take_along_axis(n, p, axis=1))
    return t
