"""The tables ``nnkit show`` prints, from the tables of a run: pure functions of
DataFrames, so that the terminal, a notebook and a report show the same numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.stops import STATUSES
from ..landscape.minima import wilson


def training(runs: pd.DataFrame, sweep_keys) -> pd.DataFrame:
    """Per sweep point: the swept values, status counts, and quantiles of the final
    and test loss over the inits that did not diverge."""
    rows = []
    for p, group in runs.groupby("point", sort=True):
        row = {"point": p, **{c: group[c].iloc[0] for c in sweep_keys}, "inits": len(group)}
        for s in STATUSES:
            row[s] = int((group["status"] == s).sum())
        ok = group[group["status"] != "diverged"]
        for q, name in ((0.0, "loss_min"), (0.5, "loss_median"), (1.0, "loss_max")):
            row[name] = ok["loss"].quantile(q) if len(ok) else np.nan
        row["test_loss_median"] = ok["test_loss"].median() if len(ok) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def landing(runs: pd.DataFrame, minima: pd.DataFrame, sweep_keys) -> pd.DataFrame:
    """Per sweep point, where the inits ended: at a global minimum, at a spurious one,
    at a saddle, or not converged; the fraction at spurious minima with its 95% Wilson
    interval, and how many distinct spurious minima (and loss levels) there are."""
    spurious = minima.set_index(["point", "minimum"])["spurious"]
    rows = []
    for p, group in runs.groupby("point", sort=True):
        ids = group["minimum"].to_numpy()
        is_spurious = np.array([bool(spurious.get((p, i), False)) for i in ids])
        at_min = ids >= 0
        found = minima[(minima["point"] == p) & minima["spurious"]]
        low, high = wilson(is_spurious.sum(), len(group))
        rows.append({
            "point": p, **{key: group[key].iloc[0] for key in sweep_keys}, "inits": len(group),
            "global": int((at_min & ~is_spurious).sum()), "spurious": int(is_spurious.sum()),
            "saddle": int((group["kind"] == "saddle").sum()),
            "not_converged": int((group["kind"] == "not converged").sum()),
            "spurious_fraction": is_spurious.mean(), "spurious_low": float(low), "spurious_high": float(high),
            "spurious_minima": len(found), "spurious_levels": found["level"].nunique(),
            **({"spurious_orbits": found["orbit"].nunique()} if "orbit" in found else {}),
        })  # fmt: skip
    return pd.DataFrame(rows)


def top_minima(minima: pd.DataFrame, sweep_keys, top: int = 10) -> pd.DataFrame:
    """The minima table as ``nnkit show`` prints it: per point the ``top`` most frequent."""
    cols = ["point", *sweep_keys, "minimum", "level", "orbit", "loss", "test_loss", "count", "fraction",
            "fraction_low", "fraction_high", "kind", "nullity", "eig_min", "spurious"]  # fmt: skip
    shown = minima.sort_values(["point", "count"], ascending=[True, False])
    return shown.groupby("point", sort=True).head(top)[[c for c in cols if c in minima.columns]]


#: below this fraction of inits that converged (or reached the loss target), a sweep
#: point earns a diagnosis
FAILING = 0.5


def diagnosis(runs: pd.DataFrame, train_cfgs, sweep_keys) -> list[str]:
    """One short paragraph per sweep point where most inits did not converge (or reach
    the loss target): how they ended (diverged, at ``max_steps``), the gradient norms
    and steps at the end, and what to change. ``train_cfgs[p]`` is the
    :class:`~nnkit.training.TrainConfig` of point ``p``."""
    out = []
    for p, group in runs.groupby("point", sort=True):
        n = len(group)
        ok = group["status"].isin(["converged", "target"]).sum()
        if ok >= FAILING * n:
            continue
        cfg = train_cfgs[p]
        where = ", ".join(f"{key} = {group[key].iloc[0]}" for key in sweep_keys)
        head = f"point {p}" + (f" ({where})" if where else "")
        diverged = int((group["status"] == "diverged").sum())
        capped = group[group["status"] == "max_steps"]
        gn = capped["grad_norm"]
        text = [f"{head}: only {ok} of {n} inits converged (gradient norm <= train.grad_tol = {cfg.grad_tol:g});"
                f" {diverged} diverged, {len(capped)} stopped at train.max_steps = {cfg.max_steps:,}."]  # fmt: skip
        if len(capped):
            text.append(f"Their final gradient norms: median {gn.median():.2g}, 10% {gn.quantile(0.1):.2g}, "
                        f"90% {gn.quantile(0.9):.2g}.")  # fmt: skip
        restarted = int((group["restarts"] > 0).sum()) if "restarts" in group else 0
        if restarted:
            text.append(f"{restarted} were restarted with smaller steps (train.restarts = {cfg.restarts}).")
        lower = _lower_the_step(cfg, group)
        if diverged >= 0.1 * n:
            text.append(f"Divergence means the step is too large for these inits: {lower}.")
        if len(capped) >= 0.1 * n:
            if gn.median() <= 100 * cfg.grad_tol:
                text.append("They were close to converging: raise train.max_steps.")
            else:
                text.append(f"They ended far from a critical point: either the step is too large and they "
                            f"oscillate ({lower}"
                            + ("; the diverged inits point that way" if diverged else "")
                            + "), or they need more steps (raise train.max_steps); train.history > 0 records "
                            "the loss curves that tell which.")  # fmt: skip
        out.append(" ".join(text))
    return out


def _lower_the_step(cfg, group) -> str:
    """What to change when the step is too large: a smaller train.lr, or restarts."""
    if cfg.lr == "auto":
        used = group["lr"].median() if "lr" in group else float("nan")
        text = f'set train.lr to a number below the steps train.lr = "auto" chose (median {used:g})'
    else:
        text = f"lower train.lr, now {cfg.lr:g}, for example to {cfg.lr / 4:g}"
    if cfg.restarts == 0:
        text += ', or restart the failed inits with half the step: train.restarts = 3, train.restart_on = ["diverged", "max_steps"]'
    return text


def analysis_diagnosis(runs: pd.DataFrame, settings: list[dict], sweep_keys) -> list[str]:
    """One short paragraph per sweep point where the analysis certified fewer than half
    of the inits: why the others are "not converged" (the column ``why_not``: gradient
    norms, the distances polishing moved) and what to change. ``settings[p]`` are the
    ``[analysis]`` settings point ``p`` was analysed with."""
    out = []
    if "why_not" not in runs:
        return out
    for p, group in runs.groupby("point", sort=True):
        n, failed = len(group), group[group["kind"] == "not converged"]
        if len(failed) <= (1 - FAILING) * n:
            continue
        cfg = settings[p] if p < len(settings) else settings[-1]
        where = ", ".join(f"{key} = {group[key].iloc[0]}" for key in sweep_keys)
        head = f"point {p}" + (f" ({where})" if where else "")
        far, moved = failed[failed["why_not"] == "far"], failed[failed["why_not"] == "moved"]
        finite = int((failed["why_not"] == "finite").sum())
        text = [f"{head}: the analysis certified {n - len(failed)} of {n} inits as critical points."]
        if len(far):
            text.append(f"{len(far)} kept a gradient norm above analysis.grad_tol = {cfg['grad_tol']:g} (after "
                        f"polishing: median {far['polished_grad_norm'].median():.2g}; where training ended: "
                        f"median {far['grad_norm'].median():.2g}).")  # fmt: skip
        if len(moved):
            text.append(f"{len(moved)} were moved by polishing more than analysis.polish_radius = "
                        f"{cfg['polish_radius']:g} (median {moved['polish_move'].median():.2g}): the critical "
                        "point it found is not the one they were approaching.")  # fmt: skip
        if finite:
            text.append(f"{finite} had a loss or parameters that are not finite (diverged).")
        if len(far) + len(moved):
            if cfg.get("descend"):
                text.append(f"Descent ran {int(failed['descend_steps'].max())} steps "
                            f"(analysis.descend_steps = {cfg['descend_steps']}): raise it, or train longer.")  # fmt: skip
                before, after = failed["loss"].median(), failed["polished_loss"].median()
                if after < before - 0.01 * abs(before):
                    text.append(f"Descent lowered their loss (median {before:.3g} where training ended, "
                                f"{after:.3g} after it) without reaching a critical point: where units "
                                "saturate (tanh, sigmoid) the loss "
                                "can fall for ever as the weights grow, with no minimum at a finite distance; "
                                "an L2 penalty (objective.l2) puts the minima at a finite distance.")  # fmt: skip
            else:
                text.append("Training stopped far from a critical point: train longer (train.max_steps, "
                            "train.grad_tol), or let the analysis carry each point downhill first with Newton "
                            "steps: analysis.descend = true (nnkit minima RUN --set analysis.descend=true).")  # fmt: skip
        out.append(" ".join(text))
    return out


def landscape(found: dict, summary: dict, sweep_keys, runs: pd.DataFrame) -> pd.DataFrame:
    """Per sweep point of a landscape survey: the pairs of minima and the median and
    largest straight-line barrier, the bands relaxed (and converged), the distinct
    transition states (and how many join two different minima), ``ts_barrier_min``:
    the smallest height of a transition state above the higher of its two minima (the
    easiest escape over any of them), and the minima found on the way."""
    rows = []
    for p, entry in enumerate(summary.get("points", [])):
        row = {"point": p}
        first = runs[runs["point"] == p]
        row.update({key: first[key].iloc[0] for key in sweep_keys if len(first)})
        if "barriers" in found:
            b = found["barriers"][found["barriers"]["point"] == p]
            row.update(pairs=len(b), barrier_median=b["barrier"].median() if len(b) else np.nan,
                       barrier_max=b["barrier"].max() if len(b) else np.nan)  # fmt: skip
        if "transition_states" in found:
            ts = found["transition_states"][found["transition_states"]["point"] == p]
            joins = ts[(ts["minimum_a"] >= 0) & (ts["minimum_b"] >= 0) & (ts["minimum_a"] != ts["minimum_b"])]
            lowest = np.minimum(joins["barrier_a"], joins["barrier_b"])
            row.update(bands=entry.get("bands", 0), bands_converged=entry.get("bands_converged", 0),
                       transition_states=len(ts), joining=len(joins),
                       ts_barrier_min=lowest.min() if len(joins) else np.nan,
                       minima_found=entry.get("minima_found", 0))  # fmt: skip
        row["seconds"] = round(sum(entry.get("seconds", {}).values()), 2)
        rows.append(row)
    return pd.DataFrame(rows)
