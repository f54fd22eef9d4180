"""The reference of the experiment file, read from the config dataclasses themselves:
every key with its type, its default, its allowed values and the ``#:`` comment above
its field (:func:`keys`), and all of it as one Markdown page (:func:`markdown`, the
documentation's config page). A field without a ``#:`` comment has no description,
which the tests refuse: the reference cannot drift from the schema.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import math
import re
import textwrap
import types
import typing
from dataclasses import dataclass
from typing import Literal

from .. import backends, data
from ..core import activations
from . import config


@dataclass(frozen=True)
class Key:
    """One key of the experiment file: ``section`` is its table (``""`` at the top
    level), ``type`` and ``default`` are texts (the default as a TOML literal, None
    when there is none), ``allowed`` the TOML literals it may take (empty: any value of
    its type), ``kind`` the data kind a ``[data]`` key belongs to (``""``: all)."""

    section: str
    name: str
    type: str
    default: str | None
    allowed: tuple[str, ...]
    description: str
    kind: str = ""

    @property
    def dotted(self) -> str:
        """The key as ``--set`` and ``[sweep]`` name it: ``train.lr``, ``inits``."""
        return f"{self.section}.{self.name}" if self.section else self.name


#: the sections of the reference in order: the top level (``""``), then the tables
SECTIONS = ("", "data", *config._SECTIONS, "sweep")

#: values that come from a list in the code rather than from a Literal type
_LISTS = {
    ("model", "activation"): lambda: activations.NAMES,
    ("run", "backend"): backends.names,
    ("data", "kind"): lambda: tuple(data.KINDS),
}

#: a ``[sweep]`` of each mode, as the reference shows them (the tests load them)
SWEEP_EXAMPLES = (
    '[sweep]\n"train.lr" = [0.05, 0.1]\n"model.hidden" = [[3], [5], [10]]\n',
    '[sweep]\nmode = "zip"\n"data.d" = [6, 7, 8]\n"model.hidden" = [[6], [7], [8]]\n',
)


def keys() -> list[Key]:
    """Every key of the experiment file: the top-level keys, ``data.kind`` and the
    ``[data]`` keys of each data kind, the keys of every other table, then ``[sweep]``."""
    comments = field_comments(config.Experiment)
    fields = {f.name: f for f in dataclasses.fields(config.Experiment)}
    hints = typing.get_type_hints(config.Experiment)

    def held(section, name, field):  # a key that Experiment holds itself
        return _key(section, name, hints[field], fields[field], comments[field])

    out = [held("", name, name) for name in config._TOP]
    out.append(held("data", "kind", "data_kind"))
    for kind, (cls, _) in data.KINDS.items():
        out += _keys_of(cls, "data", kind)
    for section, cls in config._SECTIONS.items():
        out += _keys_of(cls, section)
    out.append(held("sweep", "mode", "sweep_mode"))
    out.append(Key("sweep", '"SECTION.KEY"', "list", None, (), comments["sweep"]))
    return out


def field_comments(cls) -> dict[str, str]:
    """The ``#:`` comment lines directly above each field of the dataclass ``cls``, as
    one line per field (``""`` for a field without one)."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    body = next(node for node in ast.parse(source).body if isinstance(node, ast.ClassDef)).body
    out = {}
    for node in body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above = []
            for line in reversed(lines[: node.lineno - 1]):
                if not line.strip().startswith("#:"):
                    break
                above.append(line.strip()[2:].strip())
            out[node.target.id] = " ".join(reversed(above))
    return out


def _keys_of(cls, section: str, kind: str = "") -> list[Key]:
    comments = field_comments(cls)
    hints = typing.get_type_hints(cls)
    return [_key(section, f.name, hints[f.name], f, comments.get(f.name, ""), kind) for f in dataclasses.fields(cls)]


def _key(section, name, hint, f: dataclasses.Field, description: str, kind: str = "") -> Key:
    if f.default is not dataclasses.MISSING:
        default = toml_literal(f.default)
    elif f.default_factory is not dataclasses.MISSING:
        default = toml_literal(f.default_factory())
    else:
        default = None
    fixed = _LISTS.get((section, name))
    allowed = tuple(toml_literal(v) for v in (fixed() if fixed else _choices(hint)))
    return Key(section, name, _type_text(hint), default, allowed, description, kind)


def _choices(hint) -> tuple:
    """The values of a Literal, or of a tuple of Literals; () for anything else."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return typing.get_args(hint)
    if origin is tuple:
        return _choices(typing.get_args(hint)[0])
    return ()


def _type_text(hint) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "string"
    if origin in (types.UnionType, typing.Union):
        parts = []
        for option in typing.get_args(hint):
            literal = typing.get_origin(option) is Literal
            parts.append(" or ".join(toml_literal(v) for v in typing.get_args(option)) if literal else _type_text(option))
        return " or ".join(parts)
    if origin is tuple:
        item = _type_text(typing.get_args(hint)[0])
        return f"list of {item}s"
    return {int: "integer", float: "number", bool: "boolean", str: "string"}[hint]


def toml_literal(value) -> str:
    """``value`` (bool, int, float, str or a tuple or list of them) as TOML writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    raise TypeError(f"no TOML literal for {value!r}")


def _float(value: float) -> str:
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = repr(value)
    if "e" not in text and (abs(value) >= 1e5 or 0 < abs(value) < 1e-3):
        text = f"{value:e}"
    mantissa, e, exponent = text.partition("e")
    if not e:
        return text
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    short = f"{mantissa}e{int(exponent)}"
    return short if float(short) == value else text


# -- the Markdown page -----------------------------------------------------------

_INTRO = """\
An experiment file is TOML, one study per file. Every key has a default; unknown keys
and bad values are errors that name the key and what is allowed. Any key can be
overridden from the command line with `--set KEY=VALUE` (for example
`--set train.lr=0.5`), before the file is checked. This page is generated from the
config dataclasses of `nnkit`, so it lists exactly the keys the code reads."""

_DATA = """\
`kind` picks where the data come from; the other keys of `[data]` depend on it, and
each kind has its own table below."""

_SWEEP = """\
A `[sweep]` table gives lists of values for any keys, named by their dotted names;
the run covers their Cartesian product, and `runs.parquet` gets a column per swept
key. `run.*` keys and `data.kind` cannot be swept."""

_ZIP = """\
With `mode = "zip"` the i-th values of all keys go together instead (lists of one
length), for settings that must change together:"""


def markdown() -> str:
    """The whole reference as one Markdown page: a section per table, each a table of
    its keys with their types, defaults and descriptions."""
    everything = keys()
    by_section = {section: [k for k in everything if k.section == section] for section in SECTIONS}
    out = ["# Experiment files", "", _INTRO, "", "## Top-level keys", "", *_table(by_section[""])]
    kind_key, *data_keys = by_section["data"]
    out += ["## `[data]`", "", _DATA, "", *_table([kind_key])]
    for kind, (cls, _) in data.KINDS.items():
        out += [f"### `kind = {toml_literal(kind)}`", "", _intro(cls), ""]
        out += _table([k for k in data_keys if k.kind == kind])
    for section, cls in config._SECTIONS.items():
        out += [f"## `[{section}]`", "", _intro(cls), "", *_table(by_section[section])]
    product, zipped = SWEEP_EXAMPLES
    out += ["## `[sweep]`", "", _SWEEP, "", "```toml", product.rstrip(), "```", "", _ZIP, "",
            "```toml", zipped.rstrip(), "```", "", *_table(by_section["sweep"])]  # fmt: skip
    return "\n".join(out).rstrip() + "\n"


#: the first line of the documentation's config page
PAGE_HEADER = ("% generated from nnkit.study.reference.markdown(): do not edit. A docs build rewrites it;\n"
               "% python -m nnkit.study.reference nnkit/docs/config.md does too (a test checks it is current)\n\n")  # fmt: skip


def page() -> str:
    """The documentation's config page: :data:`PAGE_HEADER` and :func:`markdown`."""
    return PAGE_HEADER + markdown()


def _table(rows: list[Key]) -> list[str]:
    out = ["| key | type | default | description |", "|---|---|---|---|"]
    for k in rows:
        text = _rest(k.description)
        if k.allowed:
            text += "; one of " + ", ".join(f"`{v}`" for v in k.allowed)
        cells = (f"`{k.name}`", k.type, f"`{k.default}`" if k.default is not None else "none", text)
        out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return [*out, ""]


def _intro(cls) -> str:
    """The first paragraph of ``cls``'s docstring, in Markdown."""
    return _rest(inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0])


def _rest(text: str) -> str:
    """reST inline markup as Markdown: ``code`` and :role:`target` become `code`."""
    text = re.sub(r":[a-z:]+:`~?([^`<]+?)(?:\s*<[^>]*>)?`", r"`\1`", text)
    return re.sub(r"``(.+?)``", r"`\1`", " ".join(text.split()))


if __name__ == "__main__":  # pragma: no cover - the command the page header names
    import sys

    from pathlib import Path

    Path(sys.argv[1]).write_text(page(), encoding="utf-8")
