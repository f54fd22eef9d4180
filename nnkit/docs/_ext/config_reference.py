"""The experiment file's reference, from the config dataclasses themselves:

* ``config.md`` is written from :func:`nnkit.study.reference.page` when a build
  starts, so that the page is always the schema of the code being documented (the
  page is committed too, for readers of the repository: a test checks it is current);
* on the API page, a config dataclass (every field with a ``#:`` comment) is shown
  without its constructor's signature: its fields follow, each with its type, default
  and description.
"""

import dataclasses
from pathlib import Path

def write_reference(app) -> None:
    """Write ``config.md`` into the source folder, only when its text has changed (an
    unchanged page is not read again)."""
    from nnkit.study import reference

    path = Path(app.srcdir) / "config.md"
    text = reference.page()
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def config_signature(app, what, name, obj, options, signature, return_annotation):
    """No signature for a config dataclass; None (no change) for everything else."""
    if what != "class" or not dataclasses.is_dataclass(obj):
        return None
    from nnkit.study import reference

    try:
        comments = reference.field_comments(obj)
    except (OSError, TypeError):  # no source to read
        return None
    if all(comments.get(f.name) for f in dataclasses.fields(obj)):
        return "", None
    return None


def setup(app):
    app.connect("builder-inited", write_reference)
    app.connect("autodoc-process-signature", config_signature)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
