"""napoleon, fitted to the style of nnkit's docstrings:

* the entries of a ``Parameters`` or ``Attributes`` section are written
  ``name : what it is``, a description where NumPy's convention puts a type: each such
  description is moved under its name before napoleon reads the docstring;
* the docstring of an attribute or property (a ``#:`` comment above a field) is a
  sentence that may hold a colon (``the step size: a number, or "auto"``), which
  napoleon would split into a type and a description: it is kept as written.
"""

import re

SECTIONS = {"Parameters", "Attributes", "Other Parameters"}
ENTRY = re.compile(r"^(?P<indent>\s*)(?P<name>\*{0,2}\w+) : (?P<text>.+)$")
ATTRIBUTES = {"attribute", "property", "data"}

_kept: dict[str, list[str]] = {}


def move_descriptions(app, what, name, obj, options, lines) -> None:
    """Rewrite ``lines`` (a docstring, in place) before napoleon: ``name : text``
    entries of the sections above become ``name`` with ``text`` indented below it;
    an attribute's lines are kept aside for :func:`restore_attributes`."""
    if what in ATTRIBUTES:
        _kept[name] = list(lines)
        return
    out, section, base = [], None, ""
    for i, line in enumerate(lines):
        after = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if line.strip() and len(after) >= 3 and set(after) == {"-"}:
            section, base = line.strip(), line[: len(line) - len(line.lstrip())]
        entry = ENTRY.match(line)
        if section in SECTIONS and entry and entry["indent"] == base:
            out += [base + entry["name"], base + "    " + entry["text"]]
        else:
            out.append(line)
    lines[:] = out


def restore_attributes(app, what, name, obj, options, lines) -> None:
    """After napoleon: an attribute's docstring as it was written."""
    if what in ATTRIBUTES and name in _kept:
        lines[:] = _kept.pop(name)


def setup(app):
    app.setup_extension("sphinx.ext.napoleon")  # its handler runs at priority 500
    app.connect("autodoc-process-docstring", move_descriptions, priority=400)
    app.connect("autodoc-process-docstring", restore_attributes, priority=600)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
