"""A run described in words for its report (:func:`facts`): the model, data, objective
and training, the backend, the analysis and the survey, sizes and times, versions and
dates, read from the run's ``config.json``, ``meta.json``, ``analysis.json`` and
``landscape/landscape.json``.

A sentence is a template whose fields are filled per sweep point (:func:`_fill`): a
field the sweep varies reads ``a or b (by sweep point)``, the rest of the sentence
once."""

from __future__ import annotations

import dataclasses
import platform
from datetime import datetime
from importlib import metadata

from ..about import __version__
from ..runs.store import npy_shape, read_json
from ..study import config
from . import formats

#: the libraries whose versions a report names, as meta.json spells them
LIBRARIES = {"nnkit": "nnkit", "python": "Python", "numpy": "NumPy", "numba": "Numba"}
#: at most this many distinct values of a field are listed in full
LISTED = 4

_METHODS = {
    "gd": "full-batch gradient descent",
    "momentum": "gradient descent with heavy-ball momentum {momentum:g}",
    "nesterov": "Nesterov's accelerated gradient with momentum {momentum:g}",
    "sgd": "minibatch SGD with batches of {batch_size}",
}
_SCALES = {
    "lecun": "LeCun scale (gain {gain:g} / sqrt(fan-in))",
    "he": "He scale (gain {gain:g} * sqrt(2 / fan-in))",
    "glorot": "Glorot scale (gain {gain:g} * sqrt(2 / (fan-in + fan-out)))",
    "fixed": "standard deviation {std:g}",
}


def facts(run) -> list[tuple[str, str]]:
    """The experiment of ``run`` in words: ``(topic, sentences)`` pairs for the model,
    data, objective, training, backend, analysis, landscape (when surveyed), size and
    time, and versions; one paragraph when joined."""
    exps = [exp for _, exp in config.expand_sweep(run.experiment)]
    out = [
        ("Model", _model(exps, input_dims(run))),
        ("Data", _data(exps)),
        ("Objective", _objective(exps)),
        ("Training", _training(exps)),
        ("Backend", _backend(run.meta)),
        ("Analysis", _analysis(run)),
    ]
    if run.has_landscape:
        out.append(("Landscape", _landscape(run)))
    return out + [("Size and time", _size_and_time(run, exps)), ("Versions", versions(run))]


def _across(values) -> str:
    """One value per sweep point as one text: the value, or its distinct values."""
    seen = list(dict.fromkeys(str(v) for v in values))
    if len(seen) == 1:
        return seen[0]
    if len(seen) > LISTED:
        return f"{seen[0]}, {seen[1]}, …, {seen[-1]} ({len(seen)} values by sweep point)"
    return ", ".join(seen[:-1]) + f" or {seen[-1]} (by sweep point)"


def _fill(items, template: str, **fields) -> str:
    """``template`` with each field ``name`` filled by ``fields[name](item)`` over the
    ``items`` (one per sweep point), :func:`_across` them; a field that is text
    already goes in as it is."""
    return template.format(**{name: get if isinstance(get, str) else _across([get(item) for item in items])
                              for name, get in fields.items()})  # fmt: skip


def input_dims(run) -> list[tuple[int, int]]:
    """Per sweep point: the input dimension ``d`` and the parameters per network,
    from the width of the point's parameter file."""
    out = []
    for p, (_, exp) in enumerate(config.expand_sweep(run.experiment)):
        size = int(npy_shape(run.folder.params_file(p))[1])
        one, two = exp.build_model(1).layout.size, exp.build_model(2).layout.size
        out.append((1 + (size - one) // max(two - one, 1), size))
    return out


def _model(exps, shapes) -> str:
    items = list(zip(exps, shapes))
    depths = {len(exp.model.hidden) for exp in exps}
    if len(depths) == 1:
        depth = depths.pop()
        layer = "{w%d} {a%d} {u%d} {b%d} biases"
        template = ("one hidden layer of " if depth == 1 else f"{depth} hidden layers of ") + "; ".join(
            layer % (i, i, i, i) for i in range(depth))  # fmt: skip
        fields = {}
        for i in range(depth):
            fields[f"u{i}"] = "unit" if all(exp.model.hidden[i] == 1 for exp in exps) else "units"
            fields[f"w{i}"] = lambda item, i=i: item[0].model.hidden[i]
            fields[f"a{i}"] = lambda item, i=i: _activation(item[0].model, i)
            fields[f"b{i}"] = lambda item, i=i: "with" if item[0].model.per_layer("bias")[i] else "without"
        layers = _fill(items, template, **fields)
    else:
        layers = _across([f"hidden layers of widths {list(exp.model.hidden)}" for exp in exps])
    return _fill(
        items, "A {arch} network: input dimension d = {d}, {layers}, and {output}; {size} parameters per network.",
        arch=lambda item: f"{item[1][0]}-" + "-".join(map(str, item[0].model.hidden)) + "-1",
        d=lambda item: item[1][0], layers=layers, output=lambda item: _output(item[0].model),
        size=lambda item: f"{item[1][1]:,}",
    )  # fmt: skip


def _activation(model, i: int) -> str:
    name = model.per_layer("activation")[i]
    return f"leaky ReLU (slope {model.leaky_slope:g})" if name == "leaky_relu" else name


def _output(model) -> str:
    if model.output == "fixed":
        return f"a fixed output layer (every weight {model.output_value:g}, not trained)"
    return "a trained output unit" + (" with a bias" if model.output_bias else " without a bias")


def _data(exps) -> str:
    kind = exps[0].data_kind  # never swept
    samples = "n = {n} training samples and {n_test} test samples"
    count = {"n": lambda e: f"{e.data.n:,}", "n_test": lambda e: f"{e.data.n_test:,}"}
    if kind == "xor":
        return _fill(
            exps, "XOR: the four points (±1, ±1) with labels {labels} (the second where the signs differ), each "
            "{repeat}, {jitter}: n = {n} training samples; the test set is the four clean points.",
            labels=lambda e: "0 and 1" if e.data.labels == "01" else "-1 and +1",
            repeat=lambda e: {1: "once", 2: "twice"}.get(e.data.repeat, f"{e.data.repeat} times"),
            jitter=lambda e: f"with Gaussian jitter {e.data.noise:g}" if e.data.noise else "without jitter",
            n=lambda e: 4 * e.data.repeat,
        )  # fmt: skip
    if kind == "teacher_student":
        return _fill(
            exps, "Teacher-student: x ~ N(0, I) in d = {d} dimensions labelled by a {act} teacher of width {k} "
            "({weights} weights, output weights {output}){noise}; {train}; {n_test} test samples.",
            d=lambda e: e.data.d, k=lambda e: e.data.teacher_width, act=lambda e: e.data.teacher_activation,
            weights=lambda e: e.data.teacher_weights, output=lambda e: e.data.teacher_output,
            noise=lambda e: f", plus Gaussian noise {e.data.noise:g}" if e.data.noise else "",
            train=lambda e: ("trained on the exact population loss, not on samples" if e.data.population
                             else f"n = {e.data.n:,} training samples"),
            n_test=count["n_test"],
        )  # fmt: skip
    if kind == "sine":
        return _fill(
            exps, "Sine regression: y = sin({frequency} x){noise}, x ~ U({low}, {high}); " + samples + ".",
            frequency=lambda e: f"{e.data.frequency:g}", low=lambda e: f"{e.data.low:.4g}",
            high=lambda e: f"{e.data.high:.4g}",
            noise=lambda e: f" + Gaussian noise {e.data.noise:g}" if e.data.noise else "", **count,
        )  # fmt: skip
    if kind == "blobs":
        return _fill(
            exps, "Two Gaussian blobs in d = {d} dimensions, centres {separation} apart, standard deviation {std}, "
            "labels -1 and +1; " + samples + ".",
            d=lambda e: e.data.d, separation=lambda e: f"{e.data.separation:g}", std=lambda e: f"{e.data.std:g}",
            **count,
        )  # fmt: skip
    if kind == "file":
        return _fill(
            exps, "The table {name}: target column {target}, features {features} ({scaled}); {held} of the rows "
            "held out for testing.",
            name=lambda e: e.data.path.replace("\\", "/").rsplit("/", 1)[-1], target=lambda e: e.data.target,
            features=lambda e: ", ".join(e.data.features) or "every other column",
            scaled=lambda e: "standardised on the training rows" if e.data.standardize else "not rescaled",
            held=lambda e: f"{e.data.test_fraction:.0%}",
        )  # fmt: skip
    return _fill(exps, f"{kind}: {{fields}}.", fields=lambda e: ", ".join(
        f"{k} = {formats.cell(v)}" for k, v in dataclasses.asdict(e.data).items()))  # fmt: skip


def _objective(exps) -> str:
    def names(e):
        return tuple(name for name in ("L2", "L1") if getattr(e.objective, name.lower()))

    def where(e):
        return "the weights and biases" if e.objective.regularize_bias else "the weights (not the biases)"

    def penalty(e):
        terms = [f"an {name} penalty of {getattr(e.objective, name.lower()):g}" for name in names(e)]
        return f"plus {' and '.join(terms)} on {where(e)}" if terms else "without a penalty"

    kinds = {names(e) for e in exps}
    if len(kinds) == 1 and kinds != {()}:  # the same penalties everywhere: their weights may vary
        terms = " and ".join(f"an {name} penalty of {{{name}}}" for name in kinds.pop())
        weights = {name: (lambda e, name=name: f"{getattr(e.objective, name.lower()):g}") for name in names(exps[0])}
        penalties = _fill(exps, f"plus {terms} on {{where}}", where=where, **weights)
    else:
        penalties = _across([penalty(e) for e in exps])
    return _fill(
        exps, "The {reduction} {loss} loss{half}, {penalty}.",
        reduction=lambda e: "mean" if e.objective.reduction == "mean" else "summed", loss=lambda e: e.objective.loss,
        half=lambda e: ", halved" if e.objective.half else "", penalty=penalties,
    )  # fmt: skip


def _training(exps) -> str:
    auto = any(e.train.lr == "auto" for e in exps)
    text = _fill(
        exps, "Inits drawn from a {distribution} distribution of {scale}, {bias} (seed {seed}), trained by {method} "
        "with {step}; each init stopped at a gradient norm of {grad_tol}{target}, or after {steps} steps, and "
        "counted as diverged above a loss of {max_loss}.",
        distribution=lambda e: e.init.distribution,
        scale=lambda e: _SCALES[e.init.scale].format(gain=e.init.gain, std=e.init.std),
        bias=lambda e: "biases starting at zero" if e.init.bias == "zeros" else "biases drawn like the weights",
        seed=lambda e: e.seed, method=lambda e: _METHODS[e.train.method].format(**dataclasses.asdict(e.train)),
        step=lambda e: (('a step chosen per init from the curvature at its start (train.lr = "auto")'
                         if e.train.lr == "auto" else f"step {e.train.lr:g}") if auto else f"step {e.train.lr:g}"),
        grad_tol=lambda e: f"{e.train.grad_tol:g}", steps=lambda e: f"{e.train.max_steps:,}",
        target=lambda e: f" or a loss of {e.train.loss_target:g}" if e.train.loss_target > 0 else "",
        max_loss=lambda e: f"{e.train.max_loss:g}",
    )  # fmt: skip
    if any(e.train.restarts for e in exps):
        text += _fill(exps, " An init that ended {why} started again with half its step, up to {times} times.",
                      why=lambda e: " or ".join(e.train.restart_on), times=lambda e: e.train.restarts)  # fmt: skip
    if any(e.train.history for e in exps):
        text += _fill(exps, " The loss was recorded at {history} log-spaced steps.", history=lambda e: e.train.history)
    return text


def _backend(meta) -> str:
    device = f" on {meta['device']}" if meta.get("device") else ""
    return f"{meta['backend']} in {meta['dtype']}{device}."


def settings(file) -> list[dict]:
    """The settings per sweep point that ``analysis.json`` or ``landscape.json``
    (``file``) records (one dict for every point: a list of one)."""
    found = read_json(file).get("settings", {})
    found = found if isinstance(found, list) else [found]
    return [s for s in found if isinstance(s, dict)] or [{}]


def _seconds(file, what: str) -> str:
    seconds = read_json(file).get("seconds")
    return f" {what} took {seconds:.3g} s." if isinstance(seconds, (int, float)) else ""


_ANALYSIS_KEYS = ("descend", "descend_tol", "descend_steps", "polish", "grad_tol", "polish_steps", "polish_radius",
                  "eig_tol", "loss_tol", "distance_tol", "global_tol", "optimum")  # fmt: skip


def _analysis(run) -> str:
    if not run.analysed:
        return "Not analysed: the minima of this run are not mapped yet."
    found = settings(run.folder.analysis_file)
    if not all(set(_ANALYSIS_KEYS) <= set(s) for s in found):
        return "Analysed with settings this report cannot read." + _seconds(run.folder.analysis_file, "It")
    g = {key: (lambda s, key=key: f"{s[key]:g}") for key in _ANALYSIS_KEYS if key not in ("descend", "polish")}
    descend = _fill(found, "{how}", how=lambda s: (
        f"first carried downhill by damped Newton steps to a gradient norm of {s['descend_tol']:g} (at most "
        f"{s['descend_steps']} steps), then " if s["descend"] else ""))  # fmt: skip
    if len({s["polish"] for s in found}) == 1 and found[0]["polish"]:
        polish = _fill(found, "polished to a gradient norm of {grad_tol} (at most {polish_steps} Levenberg-Marquardt "
                       "steps, moving at most {polish_radius} relative to its norm)", **g)  # fmt: skip
    else:
        polish = _across([f"polished to a gradient norm of {s['grad_tol']:g}" if s["polish"] else
                          f"checked for a gradient norm of {s['grad_tol']:g} (not polished)" for s in found])  # fmt: skip
    text = _fill(
        found, "Each final point was {descend}{polish}, its Hessian taken (eigenvalues within {eig_tol} of the "
        "largest count as zero), and the minima told apart modulo the network's symmetries (losses within "
        "{loss_tol}, distances within {distance_tol}){symmetry}. A minimum is global when its loss lies within "
        "{global_tol} of {known}.",
        descend=descend, polish=polish,
        symmetry=lambda s: ("" if s.get("problem_symmetry", "none") == "none"
                            else f" and counted modulo the problem's symmetry {s['problem_symmetry']}"),
        known=lambda s: "the lowest loss found" if s["optimum"] == float("-inf") else f"the optimal loss {s['optimum']:g}",
        **{key: g[key] for key in ("eig_tol", "loss_tol", "distance_tol", "global_tol")},
    )  # fmt: skip
    return text + _seconds(run.folder.analysis_file, "The analysis")


def _landscape(run) -> str:
    found = settings(run.folder.landscape_file)
    text = _fill(
        found, "Tools {tools}, between the {most} most frequent minima of each point ({pairs}, at most {max_pairs})"
        "{bands}.",
        tools=lambda s: ", ".join(s.get("tools", [])) or "none", most=lambda s: s.get("max_minima", "?"),
        pairs=lambda s: ("all pairs" if s.get("pairs") == "all"
                         else f"each with its {s.get('neighbours', '?')} nearest"),
        max_pairs=lambda s: s.get("max_pairs", "?"),
        bands=lambda s: (f"; nudged elastic bands of {s.get('images', '?')} images refined to transition states"
                         if "paths" in s.get("tools", []) else ""),
    )  # fmt: skip
    return text + _seconds(run.folder.landscape_file, "The survey")


def _size_and_time(run, exps) -> str:
    meta = run.meta
    points = meta["points"]
    text = f"{meta['inits']:,} inits, no sweep"
    if points > 1:
        sweep = run.config.get("sweep", {})
        mode = "paired values" if sweep.get("mode") == "zip" else "every combination"
        keys = "; ".join(f"{key} = {', '.join(formats.cell(v) for v in values)}"
                         for key, values in sweep.items() if key != "mode")  # fmt: skip
        text = (f"{meta['inits']:,} inits in all over {points} sweep points "
                f"({_across([f'{e.inits:,}' for e in exps])} each; the sweep takes {mode} of {keys})")  # fmt: skip
    sessions = [s for s in meta.get("sessions", []) if isinstance(s, dict)]
    compiling = sum(float(s.get("compile_seconds", 0.0)) for s in sessions)
    text += f". Training took {float(meta.get('train_seconds', 0.0)):.3g} s"
    if compiling >= 0.05:
        text += f" ({compiling:.2g} s of it compiling kernels)"
    if len(sessions) > 1:
        text += f" in {len(sessions)} sessions (the run was resumed)"
    return text + "."


def versions(run) -> str:
    """The versions of nnkit, Python, NumPy and Numba the run recorded (the others as
    installed now, said so), its git commit, and when it was made and finished."""
    meta = run.meta
    recorded = {**meta.get("versions", {}), "python": meta.get("python")}
    now = {"nnkit": __version__, "python": platform.python_version()}
    kept, added = [], []
    for key, name in LIBRARIES.items():
        if recorded.get(key):
            kept.append(f"{name} {recorded[key]}")
            continue
        try:
            found = now.get(key) or metadata.version(key)
        except metadata.PackageNotFoundError:
            continue
        added.append(f"{name} {found}")
    text = ", ".join(kept) + " (recorded with the run)" if kept else ""
    if added:
        text += ("; " if text else "") + ", ".join(added) + " (not recorded with the run: installed at report time)"
    if meta.get("git_commit"):
        text += f"; nnkit at git commit {str(meta['git_commit'])[:12]}"
    text += f". Run on {when(meta.get('created'))}, finished {when(meta.get('finished'))}"
    if recorded.get("nnkit") and recorded["nnkit"] != __version__:
        text += f"; this report was written by nnkit {__version__}"
    return text + "."


def when(stamp) -> str:
    """A time stamp of meta.json (``2026-12-03T08:23:00+0000``) as
    ``2026-12-03 08:23 UTC``; the text itself when it is not one."""
    try:
        moment = datetime.strptime(str(stamp), "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return str(stamp)
    zone = "UTC" if moment.utcoffset().total_seconds() == 0 else moment.strftime("UTC%z")
    return moment.strftime("%Y-%m-%d %H:%M ") + zone
