"""The config reference is read from the schema: every field of every table is a key
with a description, its default is the dataclass default, and the page names them all."""

import dataclasses
import tomllib
from pathlib import Path

import pytest

from nnkit import data
from nnkit.study import config, reference

KEYS = reference.keys()


def _schema():
    """(section, kind, dataclass) of every table of the experiment file."""
    return [("data", kind, cls) for kind, (cls, _) in data.KINDS.items()] + [
        (section, "", cls) for section, cls in config._SECTIONS.items()
    ]


def _value(default: str):
    return tomllib.loads(f"x = {default}")["x"]


def test_every_field_is_a_key():
    found = {(k.section, k.kind, k.name) for k in KEYS}
    for section, kind, cls in _schema():
        for f in dataclasses.fields(cls):
            assert (section, kind, f.name) in found, f"{section}.{f.name} ({kind or 'all'}) is missing"
    for name in (*config._TOP, "kind", "mode"):
        assert any(k.name == name for k in KEYS), name


def test_every_key_has_a_description():
    missing = [f"{k.dotted} ({k.kind})" if k.kind else k.dotted for k in KEYS if not k.description.strip()]
    assert not missing, f"fields without a '#:' comment above them: {', '.join(missing)}"


def test_defaults_are_the_dataclass_defaults():
    shown = {(k.section, k.kind, k.name): k for k in KEYS}
    for section, kind, cls in _schema():
        defaults = cls()
        for f in dataclasses.fields(cls):
            key = shown[(section, kind, f.name)]
            assert _value(key.default) == config._lists(getattr(defaults, f.name)), key.dotted
            for allowed in key.allowed:
                _value(allowed)  # every allowed value is a TOML literal
    top = config.Experiment(name="x")
    for key in KEYS:
        if key.section == "" and key.default is not None:
            assert _value(key.default) == getattr(top, key.name)


@pytest.mark.parametrize("value, text", [(1e-8, "1e-8"), (1e10, "1e10"), (1e-4, "1e-4"), (0.05, "0.05"),
                                         (float("-inf"), "-inf"), (0.1, "0.1"), (-3.141592653589793, "-3.141592653589793")])  # fmt: skip
def test_float_literals(value, text):
    assert reference.toml_literal(value) == text
    assert _value(text) == value


@pytest.mark.parametrize("kind", ["teacher_student", "xor", "sine", "blobs"])
def test_a_file_of_the_defaults_loads(kind):
    lines, section = ['name = "defaults"'], ""
    for k in KEYS:
        if k.default is None or (k.kind and k.kind != kind) or k.dotted == "name":
            continue
        if k.section != section:
            section = k.section
            lines.append(f"[{section}]")
        value = f'"{kind}"' if k.dotted == "data.kind" else k.default
        lines.append(f"{k.name} = {value}")
    experiment = config.from_dict(tomllib.loads("\n".join(lines)))
    assert experiment == config.from_dict({"name": "defaults", "data": {"kind": kind}})


def test_the_sweep_examples_load():
    for example in reference.SWEEP_EXAMPLES:
        experiment = config.from_dict(tomllib.loads(example))
        assert len(config.expand_sweep(experiment)) in (3, 6)


def test_markdown_names_every_key():
    page = reference.markdown()
    for k in KEYS:
        assert f"| `{k.name}` |" in page, k.dotted
    for section in ("data", *config._SECTIONS, "sweep"):
        assert f"## `[{section}]`" in page
    for kind in data.KINDS:
        assert f'### `kind = "{kind}"`' in page


def test_the_committed_config_page_is_current():
    """nnkit/docs/config.md is committed for readers of the repository; a docs build
    rewrites it, and this test fails when a change to the schema did not."""
    path = Path(__file__).resolve().parents[1] / "nnkit" / "docs" / "config.md"
    assert path.read_text(encoding="utf-8") == reference.page(), (
        "nnkit/docs/config.md is stale: python -m nnkit.study.reference nnkit/docs/config.md"
    )
