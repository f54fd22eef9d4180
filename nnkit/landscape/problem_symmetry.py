"""Minima modulo the symmetries of the problem, not only of the network
(``analysis.problem_symmetry``).

``teacher_permutations``: for the population loss against a one-hidden-layer teacher
whose unit vectors ``v_m`` are orthonormal and whose output weights are equal, with
``x ~ N(0, I_d)``, every orthogonal map ``O`` of the inputs that permutes the teacher's
units (``O v_m = v_pi(m)``) leaves the loss unchanged, and so does any rotation of the
inputs orthogonal to all ``v_m``. A student ``W`` (units as rows) and ``W O`` are then
the same minimum seen from another teacher unit: the spurious minima of one loss
level are mostly such images.

Two minima are one modulo the problem when their losses agree and their *invariants*
agree: quantities of the student that the group (and the network's own symmetries)
leave unchanged, computed after the network's canonical form has fixed scales and
signs. With ``C = W V`` the student's coordinates along the teacher's units and ``W_perp``
the rest: the sorted entries of ``C``, its sorted row and column norms, the sorted norms
of the rows of ``W_perp`` and the eigenvalues of its Gram matrix, the sorted biases and
output weights, and the singular values of ``W``. Points related by the group always
share them; two different orbits sharing every one is possible in principle and has not
been seen.
"""

from __future__ import annotations

import numpy as np

from . import symmetry

GROUPS = ("none", "teacher_permutations")


def why_not(problem, group: str) -> str | None:
    """Why ``group`` is not a symmetry of ``problem`` (None when it is)."""
    if group == "none":
        return None
    teacher, model = problem.teacher, problem.model
    if teacher is None:
        return "it needs the exact population loss against a teacher (data.population = true)"
    if model.layout.depth != 1:
        return "it needs a student with one hidden layer"
    V, b = np.asarray(teacher.V), np.asarray(teacher.b)
    if not np.allclose(V.T @ V, np.eye(V.shape[1]), atol=1e-10):
        return "the teacher's unit vectors are not orthonormal (data.teacher_weights = \"orthonormal\")"
    if not np.allclose(b, b[0]):
        return "the teacher's output weights are not all equal (data.teacher_output = \"ones\")"
    return None


def invariants(problem, theta) -> np.ndarray:
    """The invariants ``(R, m)`` of every row of ``theta (R, P)`` under
    ``teacher_permutations`` (see the module's doc)."""
    model, V = problem.model, np.asarray(problem.teacher.V, dtype=np.float64)
    lay = model.layout
    t = symmetry.canonical(model, theta)
    W = np.swapaxes(lay.weights(t, 1), 1, 2)  # (R, k, d): one row per student unit
    C = W @ V  # (R, k, k*)
    perp = W - C @ V.T
    R = t.shape[0]
    parts = [
        np.sort(C.reshape(R, -1), axis=1),
        np.sort(np.linalg.norm(C, axis=2), axis=1),
        np.sort(np.linalg.norm(C, axis=1), axis=1),
        np.sort(np.linalg.norm(perp, axis=2), axis=1),
        np.linalg.eigvalsh(perp @ np.swapaxes(perp, 1, 2)),
        np.linalg.svd(W, compute_uv=False),
    ]
    bias = lay.biases(t, 1)
    if bias is not None:
        parts.append(np.sort(bias, axis=1))
    if lay.output_trained:
        parts.append(np.sort(lay.view(t, "W_out"), axis=1))
    return np.concatenate(parts, axis=1)


def orbits(keys, loss, degenerate, cfg) -> np.ndarray:
    """Orbit ids of minima (rows in order of loss) from their invariants ``keys (M, m)``:
    two are one when their losses agree within ``cfg.loss_tol`` and their invariants
    within ``cfg.distance_tol`` (relative); degenerate minima, whose invariants change
    along their valley, by their losses alone (as the network's grouping does)."""
    from .minima import greedy

    return greedy(np.asarray(keys), np.asarray(loss), np.asarray(degenerate), cfg)
