"""The report of a finished run: one self-contained HTML page (``RUN/report.html``: CSS
inline, figures embedded as PNG data, no script, nothing fetched) and its Markdown twin
(``RUN/report.md``, whose figures are the PNG files of ``RUN/figures/``), written by
:func:`write_report`.

Both say the same, in order: the experiment in words (:mod:`.words`), where the inits
ended, training and its diagnosis, the minima, every figure of the run with a caption
(:mod:`.gallery`), the landscape between the minima where it was surveyed, and how to
make the run again (its resolved config as TOML, and the commands).
"""

from __future__ import annotations

import base64
import html
import os
import re
from datetime import UTC, datetime
from pathlib import Path

from ..about import __version__
from ..runs.store import atomic_path, write_figure
from . import formats, gallery, recipe, words
from .browser import screenshot
from .gallery import Shown
from .style import CSS

__all__ = ["Shown", "figures_of", "render_html", "render_markdown", "screenshot", "write_report"]

#: the most frequent minima of each point that the minima table shows
TOP = 10
#: a number with an exponent, which a line must not break at its sign
_EXPONENT = re.compile(r"\b\d+(?:\.\d+)?e[-+]\d+\b")


def write_report(run, out=None) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` of the finished run ``run`` (a
    :class:`nnkit.Run`) into its folder, or into the folder ``out``; the figures the
    Markdown shows are written into ``RUN/figures/`` where they are missing or stale.
    Takes the run folder's lock, as every writer of a run folder does
    (:class:`~nnkit.runs.lock.Busy` while another process writes it). Returns the
    paths of the HTML and the Markdown file."""
    with run.folder.writing():
        run.reload()
        run.check()
        shown = figures_of(run)
        for item in shown:
            if item.figure is not None:
                write_figure(item.path, item.figure)
                item.figure = None
        folder = Path(out) if out is not None else run.path
        texts = {"report.html": render_html(run, shown), "report.md": render_markdown(run, shown, folder)}
        for name, text in texts.items():
            with atomic_path(folder / name) as tmp:
                tmp.write_text(text, encoding="utf-8")
    return folder / "report.html", folder / "report.md"


def figures_of(run) -> list[Shown]:
    """Every figure the report of ``run`` shows, in order (:func:`.gallery.collect`);
    nothing is written."""
    survey = words.settings(run.folder.landscape_file) if run.has_landscape else ()
    return gallery.collect(run, survey)


# -- the content, once for both formats -----------------------------------------------


def _blocks(run, shown: list[Shown]) -> list[tuple]:
    """The report as blocks ``(kind, ...)``: ``h2`` (anchor, title, short title),
    ``p`` (segments ``(style, text)``, style ``""``, ``b`` or ``code``), ``note``
    (text), ``table`` (frame), ``figure`` (number, :class:`Shown`), ``commands``
    (``(command, what it does)`` pairs), ``toml`` (the experiment file's text)."""
    minima = run.minima
    para = []
    for topic, text in words.facts(run):
        para += [("b", f"{topic}."), ("", f" {text} ")]
    out = [("h2", "experiment", "The experiment", "Experiment"), ("p", para)]
    out.append(("h2", "landing", "Where the inits ended", "Where the inits ended"))
    if minima is None:
        out.append(("p", [
            ("", "This run has not been analysed, so where the inits ended is not known yet. Map its minima with "),
            ("code", "nnkit minima RUN"), ("", f" (RUN: this run's folder, …/{run.name}/{run.path.name}); then "),
            ("code", "nnkit landscape RUN"), ("", " surveys the landscape between them; then write this report again."),
        ]))  # fmt: skip
    else:
        out.append(_say(
            "The inits that ended at a global minimum, at a spurious one, at a saddle, or not converged (the "
            "analysis certified no critical point); the fraction at spurious minima with its 95% Wilson interval, "
            "and the distinct spurious minima and their loss levels.", run,
        ))  # fmt: skip
        out.append(_table(run, run.landing()))
    out.append(("h2", "training", "Training", "Training"))
    out.append(_say(
        "How training ended, and the final loss (smallest, median, largest) and median test loss of the inits "
        "that did not diverge.", run,
    ))  # fmt: skip
    out.append(_table(run, run.training()))
    out += [("note", paragraph) for paragraph in run.diagnosis()]
    if minima is not None:
        out.append(("h2", "minima", "The minima", "Minima"))
        if minima.empty:
            out.append(_say("No init reached a certified minimum, so there is no minimum to list."))
        else:
            counts = minima.groupby("point").size().reindex(range(run.points), fill_value=0)
            spread = f" over {run.points} sweep points ({', '.join(map(str, counts))})" if run.points > 1 else ""
            if run.points > 1:
                listed = f"the {TOP} most frequent of each point (its swept values are in the tables above)"
            else:
                listed = "all of them" if len(minima) <= TOP else f"the {TOP} most frequent"
            out.append(_say(
                f"{len(minima):,} distinct minima in all{spread}, modulo the network's symmetries; {listed}, with "
                "the fraction of inits that reached each and its 95% interval:"
            ))  # fmt: skip
            out.append(_table(run, run.top_minima(TOP).drop(columns=run.sweep_keys)))
    numbered = {id(item): k for k, item in enumerate(shown, start=1)}
    ours = [("figure", numbered[id(item)], item) for item in shown if item.section == "run"]
    if ours:
        out += [("h2", "figures", "Figures", "Figures"), *ours]
    if run.has_landscape:
        out.append(("h2", "landscape", "The landscape between the minima", "Landscape"))
        out.append(_say(
            "The pairs of minima and their median and largest barrier on the straight line, the bands relaxed "
            "(and converged), the distinct transition states and how many join two different minima, the lowest "
            "barrier over one (ts_barrier_min), and the minima found on the way.", run,
        ))  # fmt: skip
        out.append(_table(run, run.landscape_summary()))
        out += [("note", note) for note in run.landscape_notes()]
        out += [("figure", numbered[id(item)], item) for item in shown if item.section == "landscape"]
    out.append(("h2", "reproduce", "How to reproduce it", "Reproduce"))
    out.append(("p", [("", "Save the resolved experiment below (every default explicit) as "),
                      ("code", "experiment.toml"), ("", " and run:")]))  # fmt: skip
    out.append(("commands", recipe.commands(run)))
    out.append(("toml", formats.toml(run.config, f"{run.name}: the experiment of run {run.path.name}")))
    return out


def _say(text: str, run=None) -> tuple:
    """A paragraph; given a ``run`` of several points, one about each of them."""
    if run is not None and run.points > 1:
        text = f"Per sweep point: {text[:1].lower()}{text[1:]}"
    return ("p", [("", text)])


def _table(run, frame) -> tuple:
    """A table block; the column ``point`` goes where the run has one point only."""
    return ("table", frame.drop(columns="point") if run.points == 1 and "point" in frame else frame)


def _stats(run) -> list[tuple[str, str]]:
    """The numbers at the top of the report: ``(value, label)``."""
    meta = run.meta
    out = [(f"{meta['inits']:,}", "inits"), (str(run.points), "sweep points" if run.points > 1 else "sweep point")]
    if run.minima is not None:
        landing = run.landing()
        share = landing["spurious"].sum() / max(landing["inits"].sum(), 1)
        out += [(f"{len(run.minima):,}", "distinct minima"), (f"{share:.1%}", "spurious fraction")]
    else:
        out.append(("–", "not analysed"))
    out += [(f"{float(meta.get('train_seconds', 0)):.3g} s", "training"), (str(meta["backend"]), meta["dtype"])]
    return out


# -- HTML and Markdown ------------------------------------------------------------------


def render_html(run, shown: list[Shown] | None = None) -> str:
    """The report of ``run`` as one self-contained HTML page (figures from ``shown``,
    default :func:`figures_of`; a stale one drawn afresh); returns its text."""
    shown = figures_of(run) if shown is None else shown
    blocks = _blocks(run, shown)
    esc = html.escape
    tags = {"": "{}", "b": "<strong>{}</strong>", "code": "<code>{}</code>"}

    def text(words: str) -> str:  # escaped, numbers such as 1e-07 never broken at their sign
        return _EXPONENT.sub(r'<span class="nb">\g<0></span>', esc(words))

    body = []
    for block in blocks:
        kind = block[0]
        if kind == "h2":
            body.append(f'<h2 id="{block[1]}">{esc(block[2])}</h2>')
        elif kind == "p":
            body.append("<p>" + "".join(tags[style].format(text(part)) for style, part in block[1]).strip() + "</p>")
        elif kind == "note":
            body.append(f'<p class="note">{text(block[1])}</p>')
        elif kind == "table":
            body.append(f'<div class="table-wrap">{formats.html_table(block[1])}</div>')
        elif kind == "figure":
            number, item = block[1], block[2]
            data = base64.b64encode(item.png()).decode("ascii")
            body.append(f'<figure id="figure-{number}"><img src="data:image/png;base64,{data}" alt="{esc(item.title)}">'
                        f"<figcaption><b>Figure {number}. {esc(item.title)}.</b> {esc(item.caption)}</figcaption>"
                        "</figure>")  # fmt: skip
        elif kind == "commands":
            items = "".join(f"<li><pre><code>{esc(c)}</code></pre>{esc(what[:1].upper() + what[1:])}.</li>"
                            for c, what in block[1])  # fmt: skip
            body.append(f'<ol class="commands">{items}</ol>')
        elif kind == "toml":
            body.append(f"<details open><summary>experiment.toml ({block[1].count(chr(10))} lines)</summary>"
                        f'<pre><code class="language-toml">{esc(block[1])}</code></pre></details>')  # fmt: skip
    stats = "".join(f'<div class="stat"><b>{esc(v)}</b><span>{esc(label)}</span></div>' for v, label in _stats(run))
    nav = " ".join(f'<a href="#{b[1]}">{esc(b[3])}</a>' for b in blocks if b[0] == "h2")
    created = words.when(run.meta.get("created"))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="nnkit {esc(__version__)}">
<title>{esc(run.name)}: run {esc(run.path.name)}</title>
<style>{CSS}</style>
</head>
<body>
<main>
<header>
<p class="kicker">nnkit run report</p>
<h1>{esc(run.name)}</h1>
<p class="sub">Run <code>{esc(run.path.name)}</code>, {esc(created)}</p>
<div class="stats">{stats}</div>
<nav>{nav}</nav>
</header>
{chr(10).join(body)}
<footer>{esc(_footer())}</footer>
</main>
</body>
</html>
"""


def render_markdown(run, shown: list[Shown] | None = None, folder=None) -> str:
    """The report of ``run`` as Markdown with pipe tables, its figures (``shown``,
    default :func:`figures_of`) linked by their paths relative to ``folder`` (where the
    Markdown goes; default the run folder): their files must exist, as
    :func:`write_report` sees to. Returns its text."""
    shown = figures_of(run) if shown is None else shown
    folder = Path(folder) if folder is not None else run.path
    marks = {"": "{}", "b": "**{}**", "code": "`{}`"}
    stats = " · ".join(f"**{v}** {label}" for v, label in _stats(run))
    out = [f"# {run.name}", "", f"Run `{run.path.name}`, {words.when(run.meta.get('created'))}", "", stats]
    for block in _blocks(run, shown):
        kind = block[0]
        if kind == "h2":
            out += ["", f"## {block[2]}"]
        elif kind == "p":
            out += ["", "".join(marks[style].format(text) for style, text in block[1]).strip()]
        elif kind == "note":
            out += ["", f"> {block[1]}"]
        elif kind == "table":
            out += ["", formats.pipe_table(block[1])]
        elif kind == "figure":
            number, item = block[1], block[2]
            where = Path(os.path.relpath(item.path, folder)).as_posix()
            out += ["", f"![{item.title}]({where})", "", f"*Figure {number}. {item.title}.* {item.caption}"]
        elif kind == "commands":
            out += [""] + [f"{k}. `{c}`: {what}." for k, (c, what) in enumerate(block[1], start=1)]
        elif kind == "toml":
            out += ["", "```toml", block[1].rstrip("\n"), "```"]
    out += ["", "---", "", _footer()]
    return "\n".join(out) + "\n"


def _footer() -> str:
    return f"Written by nnkit {__version__} on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}."
