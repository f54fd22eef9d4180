"""Experiment files: TOML validated into frozen dataclasses with every default explicit.

An experiment file has top-level keys ``name``, ``seed``, ``inits`` and the tables
``[data]``, ``[model]``, ``[objective]``, ``[init]``, ``[train]``, ``[run]``,
``[analysis]``, ``[landscape]`` and an optional ``[sweep]``. Unknown keys and bad values raise
:class:`ConfigError` naming the key and what is allowed. ``overrides``
(``"train.lr=0.5"``) are applied before validation; a ``[sweep]`` table of lists expands
into the Cartesian product (or, with ``mode = "zip"``, the paired values) of resolved
experiments by :func:`expand_sweep`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .. import backends, data
from ..core import activations, validate
from ..core.init import InitSpec
from ..core.layout import Layout
from ..core.losses import ObjectiveSpec
from ..core.model import Model
from ..errors import ConfigError, UserError
from ..landscape.minima import AnalysisConfig
from ..landscape.survey import LandscapeConfig
from ..training.loop import TrainConfig


@dataclass(frozen=True)
class ModelConfig:
    """The ``[model]`` table: a multilayer perceptron with one output.

    ``hidden``: widths of the hidden layers. ``activation`` and ``bias``: one value for
    every hidden layer or a list with one per layer. ``output``: ``trained`` output
    weights, or ``fixed`` ones all equal to ``output_value``."""

    #: widths of the hidden layers
    hidden: tuple[int, ...] = (4,)
    #: the hidden layers' activation: one name, or a list with one per hidden layer
    activation: str | tuple[str, ...] = "relu"
    #: hidden-layer biases: one flag, or a list with one per hidden layer
    bias: bool | tuple[bool, ...] = True
    #: ``trained`` output weights, or ``fixed`` ones all equal to ``output_value``
    output: Literal["trained", "fixed"] = "trained"
    #: the output weight of ``output = "fixed"``
    output_value: float = 1.0
    #: a trained output bias (needs ``output = "trained"``)
    output_bias: bool = False
    #: the slope of ``leaky_relu`` on the negative side
    leaky_slope: float = 0.01

    def check(self):
        if not self.hidden or min(self.hidden) < 1:
            raise ConfigError(f"model.hidden = {list(self.hidden)} needs at least one positive width")
        for key in ("activation", "bias"):
            value = getattr(self, key)
            if isinstance(value, tuple) and len(value) != len(self.hidden):
                raise ConfigError(
                    f"model.{key} has {len(value)} entries for {len(self.hidden)} hidden layers"
                )
        for name in self.per_layer("activation"):
            if name not in activations.NAMES:
                raise ConfigError(
                    f"model.activation = {name!r} is not allowed "
                    f"(expected one of: {', '.join(activations.NAMES)})"
                )
        if self.output == "fixed" and self.output_bias:
            raise ConfigError("model.output_bias = true needs model.output = 'trained'")

    def per_layer(self, key):
        value = getattr(self, key)
        return value if isinstance(value, tuple) else (value,) * len(self.hidden)


@dataclass(frozen=True)
class RunConfig:
    """The ``[run]`` table, how the work is cut: ``chunk_size`` inits at a time (0: as
    many as fit in ``memory_mb``), on ``backend``; here, or as tasks on the Dask
    scheduler at ``scheduler`` (an address such as ``tcp://host:8786``), or on a
    ``LocalCluster`` of ``workers`` processes started for the run (0: none)."""

    #: the backend the inits train on; ``auto``: the fastest one usable on this machine
    #: (``nnkit backends`` lists them)
    backend: str = "auto"
    #: inits per chunk; 0 picks it from ``memory_mb``
    chunk_size: int = 0
    #: memory budget of one chunk on the CPU, in MB (the GPU backends use 60% of the
    #: device's free memory)
    memory_mb: int = 512
    #: address of a Dask scheduler (``tcp://host:8786``): the chunks train on its
    #: workers (empty: not on a remote cluster)
    scheduler: str = ""
    #: train on a Dask ``LocalCluster`` of this many worker processes started for the
    #: run (0: in this process)
    workers: int = 0

    def check(self):
        validate.check(self, "run", chunk_size=">= 0", memory_mb=">= 1", workers=">= 0")
        if self.scheduler and self.workers:
            raise ConfigError("run.scheduler and run.workers are exclusive: a remote cluster or a local one")
        allowed = backends.names()
        if self.backend not in allowed:
            raise ConfigError(
                f"run.backend = {self.backend!r} is not allowed (expected one of: {', '.join(allowed)})"
            )


@dataclass(frozen=True)
class Experiment:
    """One fully resolved experiment (a single point of a sweep): the top-level keys
    ``name``, ``seed`` and ``inits``, and one dataclass per table."""

    #: results go to ``results/<name>/<run-id>/`` (in a file: the file's name unless
    #: set)
    name: str
    #: seeds the data and every init's stream
    seed: int = 0
    #: number of random initialisations R (of every sweep point)
    inits: int = 100
    #: where the data come from (``kind`` in ``[data]``); the other keys of ``[data]``
    #: depend on it
    data_kind: str = "teacher_student"
    #: the ``[data]`` table: the options of ``data_kind`` (its dataclass in
    #: :data:`nnkit.data.KINDS`)
    data: Any = field(default_factory=data.TeacherStudent)
    #: the ``[model]`` table
    model: ModelConfig = field(default_factory=ModelConfig)
    #: the ``[objective]`` table
    objective: ObjectiveSpec = field(default_factory=ObjectiveSpec)
    #: the ``[init]`` table
    init: InitSpec = field(default_factory=InitSpec)
    #: the ``[train]`` table
    train: TrainConfig = field(default_factory=TrainConfig)
    #: the ``[run]`` table
    run: RunConfig = field(default_factory=RunConfig)
    #: the ``[analysis]`` table
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    #: the ``[landscape]`` table
    landscape: LandscapeConfig = field(default_factory=LandscapeConfig)
    #: the ``[sweep]`` table's lists of values, each for a dotted key such as
    #: ``"train.lr"`` or ``"model.hidden"`` (any key but ``run.*`` and ``data.kind``);
    #: every point of the sweep is one experiment, and ``runs.parquet`` gets a column
    #: per swept key
    sweep: tuple[tuple[str, tuple], ...] = ()
    #: ``product``: every combination of the swept values; ``zip``: the i-th values of
    #: every key together (all lists of one length)
    sweep_mode: Literal["product", "zip"] = "product"

    # -- the objects the library works with --------------------------------
    def build_model(self, d: int) -> Model:
        m = self.model
        layout = Layout(
            d=d,
            widths=m.hidden,
            bias=m.per_layer("bias"),
            output_trained=m.output == "trained",
            output_bias=m.output_bias,
            output_value=m.output_value,
        )
        return Model(layout, m.per_layer("activation"), m.leaky_slope)


    def to_dict(self) -> dict:
        """Plain nested dict (lists, not tuples) that :func:`from_dict` reads back."""
        out = {"name": self.name, "seed": self.seed, "inits": self.inits}
        out["data"] = {"kind": self.data_kind, **dataclasses.asdict(self.data)}
        for section in ("model", "objective", "init", "train", "run", "analysis", "landscape"):
            out[section] = dataclasses.asdict(getattr(self, section))
        if self.sweep:
            out["sweep"] = {key: list(values) for key, values in self.sweep}
            if self.sweep_mode != "product":
                out["sweep"]["mode"] = self.sweep_mode
        return _lists(out)


_SECTIONS = {
    "model": ModelConfig,
    "objective": ObjectiveSpec,
    "init": InitSpec,
    "train": TrainConfig,
    "run": RunConfig,
    "analysis": AnalysisConfig,
    "landscape": LandscapeConfig,
}
_TOP = {"name": str, "seed": int, "inits": int}
#: float keys that may be infinite (a bound or target that is switched off)
_INFINITY_ALLOWED = {"train.max_loss", "train.loss_target", "analysis.optimum", "landscape.top"}
#: keys a sweep cannot vary: how the work runs, and the data kind (whose options differ)
_NOT_SWEPT = ("run.", "data.kind")


def from_dict(raw: dict, default_name: str = "experiment") -> Experiment:
    """Validate a nested dict (as read from TOML) into an :class:`Experiment`."""
    raw = dict(raw)
    allowed = [*_TOP, "data", *_SECTIONS, "sweep"]
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"unknown key {key!r} (allowed: {', '.join(allowed)})")
    kwargs = {}
    for key, kind in _TOP.items():
        if key in raw:
            kwargs[key] = _convert(raw[key], kind, key)
    kwargs.setdefault("name", default_name)
    if kwargs.get("inits", 1) < 1:
        raise ConfigError(f"inits = {kwargs['inits']} must be at least 1")
    if not 0 <= kwargs.get("seed", 0) < 2**63:
        raise ConfigError(f"seed = {kwargs['seed']} is not allowed (expected 0 <= seed < 2**63)")
    check_plain_name(kwargs["name"], "name")

    table = dict(_table(raw, "data"))
    kind = table.pop("kind", "teacher_student")
    if not isinstance(kind, str) or kind not in data.KINDS:
        raise ConfigError(
            f"data.kind = {kind!r} is not allowed (expected one of: {', '.join(data.KINDS)})"
        )
    kwargs["data_kind"] = kind
    kwargs["data"] = _build(data.KINDS[kind][0], table, "data")
    for section, cls in _SECTIONS.items():
        kwargs[section] = _build(cls, _table(raw, section), section)

    sweep = flatten(_table(raw, "sweep"))
    mode = sweep.pop("mode", "product")
    if mode not in ("product", "zip"):
        raise ConfigError(f"sweep.mode = {mode!r} is not allowed (expected 'product' or 'zip')")
    kwargs["sweep_mode"] = mode
    if mode == "zip" and len({len(v) if isinstance(v, list) else -1 for v in sweep.values()}) > 1:
        raise ConfigError("sweep.mode = 'zip' needs lists of one length for every swept key")
    for key, values in sweep.items():
        if key.startswith(_NOT_SWEPT):
            raise ConfigError(
                f"sweep.{key}: run.* keys and data.kind cannot be swept "
                f"(make one experiment file per setting)"
            )
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.{key} must be a non-empty list of values")
    kwargs["sweep"] = tuple((key, tuple(_tuples(v) for v in values)) for key, values in sweep.items())
    experiment = Experiment(**kwargs)
    for point in expand_sweep(experiment):  # every point must be valid on its own
        pass
    return experiment


def check_plain_name(value: str, what: str) -> None:
    """``value`` must be usable as one folder name (no separators or control characters,
    not . or .., not hidden, at most :data:`MAX_NAME` bytes)."""
    plain = value and value not in (".", "..") and value == value.strip() and not value.startswith(".")
    if not plain or any(c in value for c in "/\\") or any(ord(c) < 32 for c in value):
        raise ConfigError(f"{what} = {value!r} is not allowed (expected a plain folder name)")
    if len(value.encode("utf-8", "surrogateescape")) > MAX_NAME:
        raise ConfigError(f"{what} is {len(value.encode('utf-8', 'surrogateescape'))} bytes long (at most {MAX_NAME})")


#: the longest experiment name or run id, in bytes (file systems allow 255 per name, and
#: the run store adds a few characters to names it writes aside)
MAX_NAME = 200


def load(path, overrides=()) -> Experiment:
    """Read, override and validate the experiment file at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"experiment file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    for item in overrides:
        apply_override(raw, item)
    _resolve_data_paths(raw, path.parent)
    return from_dict(raw, default_name=path.stem)


def _resolve_data_paths(raw: dict, folder: Path) -> None:
    """Relative data paths, in ``[data]`` or swept, are taken from ``folder``."""

    def resolve(value):
        return str((folder / value).resolve()) if isinstance(value, str) else value

    data_table = raw.get("data")
    if isinstance(data_table, dict) and "path" in data_table:
        data_table["path"] = resolve(data_table["path"])
    if isinstance(raw.get("sweep"), dict):
        raw["sweep"] = sweep = flatten(raw["sweep"])
        if isinstance(sweep.get("data.path"), list):
            sweep["data.path"] = [resolve(v) for v in sweep["data.path"]]


def apply_override(raw: dict, item: str) -> None:
    """Apply ``key=value`` (dotted key, TOML value or bare string) to ``raw`` in place."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    *parents, leaf = key.split(".")
    table = raw
    for part in parents:
        table = table.setdefault(part, {})
        if not isinstance(table, dict):
            raise ConfigError(f"--set {key}: {part!r} is not a table")
    table[leaf] = value


def expand_sweep(experiment: Experiment) -> list[tuple[dict, Experiment]]:
    """The sweep's points: ``[(values {key: value}, experiment without sweep), ...]``."""
    if not experiment.sweep:
        return [({}, experiment)]
    base = experiment.to_dict()
    base.pop("sweep")
    keys = [key for key, _ in experiment.sweep]
    points = []
    lists = [values for _, values in experiment.sweep]
    combos = zip(*lists) if experiment.sweep_mode == "zip" else itertools.product(*lists)
    for combo in combos:
        raw = _lists(base)
        for key, value in zip(keys, combo):
            *parents, leaf = key.split(".")
            table = raw
            for part in parents:
                if not isinstance(table.get(part), dict):
                    raise ConfigError(f"sweep key {key!r} does not name a config key")
                table = table[part]
            if leaf not in table:
                raise ConfigError(f"sweep key {key!r} does not name a config key")
            table[leaf] = _lists(value)
        points.append((dict(zip(keys, combo)), from_dict(raw, experiment.name)))
    return points


# -- validation machinery ------------------------------------------------------


def _table(raw, section):
    value = raw.get(section, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{section} must be a table ([{section}])")
    return value


def _build(cls, table: dict, section: str):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in table.items():
        if key not in names:
            raise ConfigError(
                f"unknown key '{section}.{key}' (allowed: {', '.join(names)})"
            )
        kwargs[key] = _convert(value, hints[key], f"{section}.{key}")
    obj = cls(**kwargs)
    try:
        obj.check()
    except UserError as exc:
        raise ConfigError(str(exc)) from None
    return obj


def _describe(kind) -> str:
    origin = typing.get_origin(kind)
    if origin is Literal:
        return "one of: " + ", ".join(repr(a) for a in typing.get_args(kind))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_describe(a) for a in typing.get_args(kind))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(kind)[0])}"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        kind, str(kind)
    )


def _convert(value, kind, key):
    def bad():
        return ConfigError(f"{key} = {value!r} is not allowed (expected {_describe(kind)})")

    origin = typing.get_origin(kind)
    if origin is Literal:
        if value not in typing.get_args(kind) or isinstance(value, bool):
            raise bad()
        return value
    if origin in (types.UnionType, typing.Union):
        options = typing.get_args(kind)
        ordered = sorted(options, key=lambda k: typing.get_origin(k) is not tuple)
        if not isinstance(value, (list, tuple)):
            ordered = ordered[::-1]
        for option in ordered:
            try:
                return _convert(value, option, key)
            except ConfigError:
                continue
        raise bad()
    if origin is tuple:
        item = typing.get_args(kind)[0]
        values = value if isinstance(value, (list, tuple)) else [value]
        try:
            return tuple(_convert(v, item, key) for v in values)
        except ConfigError:
            raise bad() from None
    if kind is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        value = float(value)
        if not (math.isfinite(value) or (key in _INFINITY_ALLOWED and not math.isnan(value))):
            raise ConfigError(f"{key} = {value} is not allowed (expected a finite number)")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise bad()
        return value
    raise TypeError(f"unsupported config type {kind!r} for {key}")


def flatten(table, prefix=""):
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}``."""
    out = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _lists(value):
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value


def _tuples(value):
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value
