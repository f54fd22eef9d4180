"""The style sheet of the HTML report, inlined into every page: one column of at most
1,100 pixels, system fonts (nothing fetched), tables that scroll sideways rather than
overflow, and figures at most the column's width."""

CSS = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #e2e6ec; --soft: #f5f7fa; --accent: #1f5fbf; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; background: #fff; color: var(--ink);
  font: 15px/1.6 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 2.2rem 2rem 3rem; }
header { border-bottom: 1px solid var(--line); padding-bottom: 1.1rem; }
.kicker { margin: 0; text-transform: uppercase; letter-spacing: .09em; font-size: .72rem; font-weight: 600;
  color: var(--accent); }
h1 { font-size: 2.1rem; line-height: 1.2; margin: .25rem 0 .2rem; letter-spacing: -.015em; }
.sub { margin: 0; color: var(--muted); }
.stats { display: grid; grid-template-columns: repeat(auto-fit, minmax(140px, 1fr)); gap: .6rem; margin: 1.1rem 0 0; }
.stat { background: var(--soft); border: 1px solid var(--line); border-radius: 8px; padding: .55rem .85rem; }
.stat b { display: block; font-size: 1.3rem; line-height: 1.3; font-variant-numeric: tabular-nums; }
.stat span { color: var(--muted); font-size: .78rem; }
nav { margin: 1rem 0 0; font-size: .85rem; }
nav a { color: var(--accent); text-decoration: none; margin-right: 1.1rem; white-space: nowrap; }
nav a:hover { text-decoration: underline; }
h2 { font-size: 1.35rem; line-height: 1.3; margin: 2.4rem 0 .7rem; padding-bottom: .35rem;
  border-bottom: 1px solid var(--line); }
p { margin: .65rem 0; }
main > p { max-width: 56rem; }
p strong { font-weight: 600; }
.nb { white-space: nowrap; }
#experiment + p strong { color: var(--accent); }
.note { background: #fff8e6; border-left: 3px solid #d99a00; border-radius: 0 6px 6px 0; padding: .6rem .9rem;
  font-size: .9rem; }
.table-wrap { overflow-x: auto; margin: .7rem 0 1.1rem; border: 1px solid var(--line); border-radius: 8px; }
table { border-collapse: collapse; width: 100%; font-size: .78rem; font-variant-numeric: tabular-nums; }
th, td { padding: .34rem .42rem; text-align: left; border-bottom: 1px solid var(--line); }
th { background: var(--soft); font-weight: 600; color: #374151; white-space: normal; vertical-align: bottom;
  line-height: 1.3; }
th.num, td.num { text-align: right; }
td { white-space: nowrap; }
tbody tr:last-child td { border-bottom: 0; }
tbody tr:nth-child(even) td { background: #fafbfc; }
figure { margin: 1.8rem 0; }
figure img { display: block; margin: 0 auto; max-width: 100%; height: auto; }
figcaption { margin: .6rem auto 0; max-width: 46rem; font-size: .87rem; color: var(--muted); }
figcaption b { color: var(--ink); font-weight: 600; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: .88em; }
p code { background: var(--soft); border: 1px solid var(--line); border-radius: 4px; padding: 0 .25rem; }
.commands { padding-left: 1.4rem; }
.commands li { margin: .5rem 0 .9rem; color: var(--muted); font-size: .9rem; }
.commands pre { margin: 0 0 .3rem; color: var(--ink); font-size: .85rem; }
details { margin: .8rem 0; }
summary { cursor: pointer; color: var(--muted); font-size: .88rem; margin-bottom: .4rem; }
details pre { columns: 2 24rem; column-gap: 2.5rem; white-space: pre-wrap; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 8px; padding: .9rem 1rem;
  overflow-x: auto; font-size: .82rem; line-height: 1.45; }
footer { margin-top: 3rem; padding-top: .9rem; border-top: 1px solid var(--line); color: var(--muted);
  font-size: .8rem; }
@media print {
  main { max-width: none; padding: 0; }
  .table-wrap { overflow: visible; }
  figure, table { break-inside: avoid; }
  nav { display: none; }
}
"""
