"""Disconnectivity trees and PATHSAMPLE's files: basins and merges of a small graph
worked out by hand, the selection of what enters the tree, exact round trips of
min.data and ts.data (and PATHSAMPLE's Fortran forms), and the figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nnkit.errors import UserError
from nnkit.landscape import disconnectivity as dc
from nnkit.landscape import pathsample as ps

# The graph worked out by hand:
#
#   minimum   0    1    2    3    4
#   energy    0    1    2    0.5  3
#
#   transition states: 0-1 at 2.5, 1-2 at 3.5, 0-3 at 1.5, 2-4 at 4.5, and 1-1 at 1.2
#   (from a minimum to itself: never joins anything).
#
# Levels 5, 4, 3, 2, 1; a minimum is in a basin at level E when its energy is < E, and two
# are one basin when a path of transition states < E joins them:
#   E = 5: every minimum is below 5, every TS below 5        -> {0 1 2 3 4}
#   E = 4: 4 (energy 3) is below; 2-4 (4.5) is not           -> {0 1 2 3}, {4}
#   E = 3: 4 (energy 3) is not < 3; 1-2 (3.5) is gone        -> {0 1 3}, {2}; 4 in none
#   E = 2: 2 (energy 2) is not < 2; 0-1 (2.5) is gone        -> {0 3}, {1}; 2, 4 in none
#   E = 1: 1 (energy 1) is not < 1; 0-3 (1.5) is gone        -> {0}, {3}; 1, 2, 4 in none
# Labels by lowest member: the basin holding 0 is 0 at every level.
E_MIN = [0.0, 1.0, 2.0, 0.5, 3.0]
E_TS = [2.5, 3.5, 1.5, 4.5, 1.2]
MIN1 = [0, 1, 0, 2, 1]
MIN2 = [1, 2, 3, 4, 1]
LEVELS = [5.0, 4.0, 3.0, 2.0, 1.0]
EXPECTED = [
    [0, 0, 0, 0, 0],
    [0, 0, 0, 0, 1],
    [0, 0, 1, 0, -1],
    [0, 1, -1, 0, -1],
    [0, -1, -1, 1, -1],
]


def partition(row):
    """The basins of one level as a set of sets of minima (label numbers forgotten)."""
    return {frozenset(np.flatnonzero(row == label).tolist()) for label in set(row.tolist()) - {-1}}


def test_basins_of_the_hand_worked_graph():
    got = dc.basins(E_MIN, E_TS, MIN1, MIN2, LEVELS)
    assert got.shape == (5, 5)
    for row, want in zip(got, np.array(EXPECTED)):
        assert partition(row) == partition(want)
        assert np.array_equal(row < 0, want < 0)
    # the label order is specified too: by the lowest minimum of each basin
    assert got.tolist() == EXPECTED


def test_basins_compare_strictly_and_refuse_unsorted_levels():
    # at a level equal to a TS energy the TS does not join; equal to a minimum's, the minimum is out
    got = dc.basins(E_MIN, E_TS, MIN1, MIN2, [2.5, 0.5])
    assert partition(got[0]) == {frozenset({0, 3}), frozenset({1}), frozenset({2})}  # 0-1 at 2.5 does not join
    assert got[1].tolist() == [0, -1, -1, -1, -1]
    with pytest.raises(UserError, match="descending"):
        dc.basins(E_MIN, E_TS, MIN1, MIN2, [1.0, 2.0])
    with pytest.raises(UserError, match=r"min2\[0\] = 7"):
        dc.basins(E_MIN, [1.0], [0], [7], LEVELS)


def test_tree_of_the_hand_worked_graph():
    t = dc.tree(E_MIN, E_TS, MIN1, MIN2, LEVELS)
    # which basins meet at which level (worked out above, read upwards)
    merges = {energy: {frozenset(group) for group in groups} for energy, groups in t.merges()}
    assert set(merges) == {5.0, 4.0, 3.0, 2.0}
    assert merges[5.0] == {frozenset({0, 1, 2, 3}), frozenset({4})}
    assert merges[4.0] == {frozenset({0, 1, 3}), frozenset({2})}
    assert merges[3.0] == {frozenset({0, 3}), frozenset({1})}
    assert merges[2.0] == {frozenset({0}), frozenset({3})}
    # one leaf per minimum, each at its own energy, hanging from the last basin that holds it
    leaves = {node.minima[0]: node for node in t.nodes if node.leaf}
    assert sorted(leaves) == [0, 1, 2, 3, 4]
    assert all(leaves[m].energy == E_MIN[m] for m in leaves)
    parents = {m: t.nodes[leaves[m].parent].energy for m in leaves}
    assert parents == {0: 1.0, 3: 1.0, 1: 2.0, 2: 3.0, 4: 4.0}
    # layout: lowest child leftmost, depth first, so merging basins are adjacent
    assert t.leaves() == [0, 3, 1, 2, 4]
    assert len(t.roots) == 1 and t.nodes[t.roots[0]].minima == (0, 3, 1, 2, 4)
    for node in t.nodes:
        if node.children:
            xs = [t.nodes[c].x for c in node.children]
            assert xs == sorted(xs) and node.x == (xs[0] + xs[-1]) / 2


def test_select_reference_and_min_connections():
    # 0-1-2 a chain, 2-3 twice, 4-5 apart, 6 alone with a TS to itself
    e_min = [0.0, 1.0, 2.0, 3.0, 0.5, 1.5, 0.2]
    min1, min2 = [0, 1, 2, 2, 4, 6], [1, 2, 3, 3, 5, 6]
    e_ts = [4.0, 4.0, 4.0, 4.5, 2.0, 7.0]
    keep, ts = dc.select(e_min, e_ts, min1, min2)  # the lowest minimum, 0, is the reference
    assert keep.tolist() == [True, True, True, True, False, False, False]
    assert ts.tolist() == [True, True, True, True, False, False]
    # two connections: 0 has one, so it goes; then 1 has one (to 2), so it goes too; 2 and 3 stay
    # (the two TSs between 2 and 3 count twice)
    keep, ts = dc.select(e_min, e_ts, min1, min2, reference=3, min_connections=2)
    assert keep.tolist() == [False, False, True, True, False, False, False]
    assert ts.tolist() == [False, False, True, True, False, False]
    keep, _ = dc.select(e_min, e_ts, min1, min2, reference=5)
    assert keep.tolist() == [False, False, False, False, True, True, False]
    # a TS to itself is no connection; with none required the minimum is kept alone
    with pytest.raises(UserError, match="reference minimum 6"):
        dc.select(e_min, e_ts, min1, min2, reference=6)
    keep, ts = dc.select(e_min, e_ts, min1, min2, reference=6, min_connections=0)
    assert np.flatnonzero(keep).tolist() == [6] and not ts.any()
    with pytest.raises(UserError, match="reference minimum 0"):
        dc.select(e_min, e_ts, min1, min2, min_connections=3)


def test_levels_defaults():
    lv = dc.levels(E_MIN, E_TS)
    assert lv.shape == (20,) and np.all(np.diff(lv) < 0)
    assert 4.5 < lv[0] < 4.5 + 1e-4
    assert np.isclose(lv[-1], (lv[0] - 0.0) / 20)
    assert np.allclose(dc.levels(E_MIN, E_TS, first=5.0, spacing=1.0, count=5), LEVELS)
    assert np.allclose(dc.levels(E_MIN, E_TS, first=5.0, count=5), LEVELS)
    with pytest.raises(UserError, match="spacing"):
        dc.levels(E_MIN, E_TS, first=-1.0)
    # the top level holds the whole component in one basin
    assert len(set(dc.basins(E_MIN, E_TS, MIN1, MIN2, lv)[0].tolist())) == 1


def test_from_tables_by_id():
    minima = pd.DataFrame({"minimum": [10, 11, 12, 13, 14, 15], "loss": E_MIN + [9.0]})
    ts = pd.DataFrame({"loss": E_TS, "minimum_a": np.array(MIN1) + 10, "minimum_b": np.array(MIN2) + 10})
    t = dc.from_tables(minima, ts, first=5.0, spacing=1.0, count=5)
    assert t.levels.tolist() == LEVELS
    assert t.leaves() == [0, 3, 1, 2, 4]  # row positions; 15 (row 5) has no TS
    by_position = dc.from_tables(minima.drop(columns="minimum"), ts.assign(minimum_a=MIN1, minimum_b=MIN2),
                                 first=5.0, spacing=1.0, count=5)  # fmt: skip
    assert by_position.merges() == t.merges()
    with pytest.raises(UserError, match="minimum 99"):
        dc.from_tables(minima, ts.assign(minimum_a=[99, 11, 10, 12, 11]))
    with pytest.raises(UserError, match="minimum_b"):
        dc.from_tables(minima, ts.drop(columns="minimum_b"))


def test_figure_draws_the_tree(tmp_path):
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    t = dc.tree(E_MIN, E_TS, MIN1, MIN2, LEVELS)
    fig = dc.figure(t, labels=True)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    collections = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert collections and sum(len(c.get_segments()) for c in collections) > 0
    low, high = ax.get_ylim()
    assert low < min(E_MIN) and high > max(LEVELS)
    assert not ax.xaxis.get_visible() and ax.get_ylabel() == "loss"
    fig.savefig(tmp_path / "tree.png")

    mine = Figure()
    ax = mine.subplots()
    assert dc.figure(t, ax=ax, labels=[f"m{k}" for k in range(5)], energy_label="E") is mine
    assert len(ax.collections) == 1 and ax.get_ylabel() == "E"
    assert sorted(text.get_text() for text in ax.texts) == ["m0", "m1", "m2", "m3", "m4"]


# -- PATHSAMPLE ---------------------------------------------------------------------


def test_pathsample_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    energy = np.r_[rng.normal(size=20) * 10.0 ** rng.integers(-30, 30, size=20), 0.1, -0.0, 1e-300]
    log_freq = rng.normal(size=energy.size)
    ps.write_min_data(tmp_path / "min.data", energy, log_freq)
    back = ps.read_min_data(tmp_path / "min.data")
    assert list(back.columns) == ["energy", "log_freq", "order", "itx", "ity", "itz"]
    assert np.array_equal(back["energy"].to_numpy(), energy)
    assert np.array_equal(back["log_freq"].to_numpy(), log_freq)
    assert back["order"].tolist() == [1] * energy.size and not back[["itx", "ity", "itz"]].to_numpy().any()

    e_ts = rng.normal(size=7) + 1 / 3
    min1, min2 = rng.integers(0, energy.size, size=7), rng.integers(0, energy.size, size=7)
    ps.write_ts_data(tmp_path / "ts.data", e_ts, min1, min2)
    first = (tmp_path / "ts.data").read_text().splitlines()[0].split()
    assert [int(first[3]), int(first[4])] == [min1[0] + 1, min2[0] + 1]  # line numbers from 1 on disk
    ts = ps.read_ts_data(tmp_path / "ts.data", n_minima=energy.size)
    assert list(ts.columns) == ["energy", "log_freq", "order", "min1", "min2", "itx", "ity", "itz"]
    assert np.array_equal(ts["energy"].to_numpy(), e_ts) and not ts["log_freq"].any()
    assert ts["min1"].tolist() == min1.tolist() and ts["min2"].tolist() == min2.tolist()
    assert not list(tmp_path.glob(".*tmp"))  # written atomically, nothing left beside


def test_pathsample_reads_fortran_files(tmp_path):
    (tmp_path / "min.data").write_text(
        "  -1.2345678900D+00   3.5D-03  1  0.0D0 0.0D0 0.0D0\n"
        "   2.5d1              -0.1234-100  2\n"
        "\n"
    )
    minima = ps.read_min_data(tmp_path / "min.data")
    assert minima["energy"].tolist() == [-1.23456789, 25.0]
    assert minima["log_freq"].tolist() == [3.5e-3, -0.1234e-100]
    assert minima["order"].tolist() == [1, 2] and minima["itz"].tolist() == [0.0, 0.0]
    (tmp_path / "ts.data").write_text("1.5D+00 0.0D0 1 1 2\n2.0E0 1.0D-01 1 2 2\n")
    ts = ps.read_ts_data(tmp_path / "ts.data", n_minima=2)
    assert ts["energy"].tolist() == [1.5, 2.0] and ts["log_freq"].tolist() == [0.0, 0.1]
    assert ts["min1"].tolist() == [0, 1] and ts["min2"].tolist() == [1, 1]
    assert ts[["itx", "ity", "itz"]].to_numpy().tolist() == [[0.0] * 3] * 2


@pytest.mark.parametrize(
    "text, line, what",
    [
        ("1.0 0.0 1 0 0 0\n1.0 x 1 0 0 0\n", 2, "log_freq is 'x', not a number"),
        ("1.0 0.0 1 0 0 0\n2.0 0.0\n", 2, "2 columns, expected 3 to 6"),
        ("1.0 0.0 1 0 0 0 7 8\n", 1, "8 columns"),
        ("1.0 0.0 1.5 0 0 0\n", 1, "not a whole number"),
        ("1.0 0.0 1\n\n2.0 0.0 1\n", 2, "blank"),
        ("1.0 0.0 1\nnan 0.0 1\n", 2, "not a finite number"),
    ],
)
def test_malformed_min_data(tmp_path, text, line, what):
    path = tmp_path / "min.data"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        ps.read_min_data(path)
    message = str(err.value)
    assert "\n" not in message and "min.data" in message and f"line {line}:" in message and what in message


def test_ts_data_minima_out_of_range(tmp_path):
    path = tmp_path / "ts.data"
    path.write_text("1.0 0.0 1 1 2\n1.0 0.0 1 3 4\n")
    assert ps.read_ts_data(path)["min2"].tolist() == [1, 3]
    with pytest.raises(UserError, match=r"ts\.data, line 2: min2 = 4 is not a minimum \(1\.\.3"):
        ps.read_ts_data(path, n_minima=3)
    path.write_text("1.0 0.0 1 0 2\n")
    with pytest.raises(UserError, match="line 1: min1 = 0"):
        ps.read_ts_data(path)
    with pytest.raises(UserError, match="cannot read"):
        ps.read_ts_data(tmp_path / "missing.data")


def test_writers_refuse_what_pathsample_cannot_read(tmp_path):
    with pytest.raises(UserError, match="finite"):
        ps.write_min_data(tmp_path / "min.data", [0.0, np.nan])
    with pytest.raises(UserError, match="min2"):
        ps.write_ts_data(tmp_path / "ts.data", [1.0], [0], [-1])
    assert not (tmp_path / "min.data").exists()


def test_log_product():
    eigs = np.array([[2.0, 3.0, 1e-12, -1e-13], [np.e, np.e, np.e, 0.0], [1.0, np.nan, 2.0, 3.0]])
    got = ps.log_product(eigs)
    assert got.shape == (3,)
    assert np.isclose(got[0], np.log(6.0)) and np.isclose(got[1], 3.0) and np.isnan(got[2])
