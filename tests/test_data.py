"""Data sets: the seeded generators and the CSV / Parquet loader."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nnkit import data
from nnkit.core.seeding import data_rng
from nnkit.data import make_dataset
from nnkit.errors import UserError

GENERATORS = [
    ("teacher_student", data.TeacherStudent(d=3, n=20, n_test=7, teacher_width=2)),
    (
        "teacher_student",
        data.TeacherStudent(
            d=4, n=15, n_test=5, teacher_width=3, teacher_weights="orthonormal",
            teacher_output="normal", teacher_activation="tanh", noise=0.1,
        ),
    ),  # fmt: skip
    ("xor", data.Xor(repeat=3, noise=0.2, labels="01")),
    ("xor", data.Xor(repeat=2, noise=0.2, labels="pm1")),
    ("sine", data.Sine(n=12, n_test=6, noise=0.1)),
    ("blobs", data.Blobs(d=3, n=16, n_test=8)),
]
IDS = ["ts-normal", "ts-orthonormal", "xor-01", "xor-pm1", "sine", "blobs"]


def expected_shapes(kind, o):
    if kind == "teacher_student":
        return (o.n, o.d), (o.n_test, o.d)
    if kind == "xor":
        return (4 * o.repeat, 2), (4, 2)
    if kind == "sine":
        return (o.n, 1), (o.n_test, 1)
    return (o.n, o.d), (o.n_test, o.d)


@pytest.mark.parametrize("kind, options", GENERATORS, ids=IDS)
def test_generator_shapes(kind, options):
    ds = make_dataset(kind, options, data_rng(0))
    train_shape, test_shape = expected_shapes(kind, options)
    assert ds.X.shape == train_shape
    assert ds.y.shape == (train_shape[0],)
    assert ds.X_test.shape == test_shape
    assert ds.y_test.shape == (test_shape[0],)
    assert ds.n == train_shape[0] and ds.d == train_shape[1]
    for a in (ds.X, ds.y, ds.X_test, ds.y_test):
        assert a.dtype == np.float64
        assert np.isfinite(a).all()


@pytest.mark.parametrize("kind, options", GENERATORS, ids=IDS)
def test_generator_is_deterministic_for_a_seed(kind, options):
    a = make_dataset(kind, options, data_rng(5))
    b = make_dataset(kind, options, data_rng(5))
    c = make_dataset(kind, options, data_rng(6))
    for name in ("X", "y", "X_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.info.keys() == b.info.keys()
    for key in a.info:
        np.testing.assert_array_equal(a.info[key], b.info[key])
    # a different seed gives different samples (all these generators draw randomly)
    assert not np.array_equal(a.X, c.X)


def test_teacher_student_normal_follows_the_teacher():
    o = data.TeacherStudent(d=3, n=20, n_test=7, teacher_width=2)
    ds = make_dataset("teacher_student", o, data_rng(1))
    W, a = ds.info["teacher_W"], ds.info["teacher_a"]
    assert W.shape == (3, 2)
    np.testing.assert_array_equal(a, np.ones(2))
    np.testing.assert_allclose(ds.y, np.maximum(ds.X @ W, 0) @ a, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ds.y_test, np.maximum(ds.X_test @ W, 0) @ a, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("width", [1, 3, 4])
def test_orthonormal_teacher_is_orthonormal(width):
    o = data.TeacherStudent(d=4, n=10, n_test=3, teacher_width=width, teacher_weights="orthonormal",
                            teacher_activation="linear", teacher_output="normal")
    ds = make_dataset("teacher_student", o, data_rng(2))
    W = ds.info["teacher_W"]
    assert W.shape == (4, width)
    np.testing.assert_allclose(W.T @ W, np.eye(width), atol=1e-12)
    a = ds.info["teacher_a"]
    assert a.shape == (width,)
    np.testing.assert_allclose(ds.y, ds.X @ W @ a, rtol=1e-12, atol=1e-12)


def test_orthonormal_teacher_wider_than_d_is_user_error():
    o = data.TeacherStudent(d=2, teacher_width=3, teacher_weights="orthonormal")
    with pytest.raises(UserError, match="teacher_width"):
        o.check()
    # the normal teacher has no such limit
    data.TeacherStudent(d=2, teacher_width=3).check()


@pytest.mark.parametrize("repeat", [1, 3])
def test_xor_01_labels(repeat):
    ds = make_dataset("xor", data.Xor(repeat=repeat, labels="01"), data_rng(0))
    assert set(ds.X.ravel().tolist()) == {-1.0, 1.0}  # no noise: the clean corners
    disagree = (ds.X[:, 0] * ds.X[:, 1] < 0).astype(float)
    np.testing.assert_array_equal(ds.y, disagree)
    assert sorted(ds.y.tolist()) == [0.0] * (2 * repeat) + [1.0] * (2 * repeat)
    np.testing.assert_array_equal(ds.y_test, (ds.X_test[:, 0] * ds.X_test[:, 1] < 0).astype(float))
    assert {tuple(r) for r in ds.X_test} == {(-1.0, -1.0), (-1.0, 1.0), (1.0, -1.0), (1.0, 1.0)}


def test_xor_pm1_labels_and_jitter():
    ds = make_dataset("xor", data.Xor(repeat=4, noise=0.1, labels="pm1"), data_rng(0))
    assert set(ds.y.tolist()) == {-1.0, 1.0}
    corners = np.sign(ds.X)  # jitter 0.1 does not flip a sign (with these seeds)
    np.testing.assert_array_equal(ds.y, np.where(corners[:, 0] * corners[:, 1] < 0, 1.0, -1.0))
    assert np.abs(ds.X - corners).max() > 0  # jittered
    assert np.abs(ds.X - corners).max() < 1
    np.testing.assert_array_equal(ds.y_test, np.where(ds.X_test[:, 0] * ds.X_test[:, 1] < 0, 1.0, -1.0))


def test_sine_values_and_range():
    o = data.Sine(n=30, n_test=10, low=-1.0, high=2.0, frequency=3.0)
    ds = make_dataset("sine", o, data_rng(0))
    for X, y in ((ds.X, ds.y), (ds.X_test, ds.y_test)):
        assert X.min() >= -1.0 and X.max() <= 2.0
        np.testing.assert_allclose(y, np.sin(3.0 * X[:, 0]), rtol=1e-12, atol=1e-12)


def test_sine_high_must_exceed_low():
    with pytest.raises(UserError, match="data.high"):
        data.Sine(low=1.0, high=1.0).check()


def test_blobs_labels_and_direction():
    o = data.Blobs(d=3, n=40, n_test=20, separation=20.0, std=0.5)
    ds = make_dataset("blobs", o, data_rng(0))
    u = ds.info["direction"]
    assert u.shape == (3,)
    assert np.linalg.norm(u) == pytest.approx(1.0)
    assert set(ds.y.tolist()) <= {-1.0, 1.0}
    # well separated: the side of the plane through 0 normal to u is the label
    np.testing.assert_array_equal(np.sign(ds.X @ u), ds.y)
    np.testing.assert_array_equal(np.sign(ds.X_test @ u), ds.y_test)
    # the centres are at +-separation/2 along u
    assert (ds.X[ds.y > 0] @ u).mean() == pytest.approx(10.0, abs=0.5)
    assert (ds.X[ds.y < 0] @ u).mean() == pytest.approx(-10.0, abs=0.5)


# -- the user's own files --------------------------------------------------------


def frame(n=20):
    rng = np.random.default_rng(0)
    a = rng.normal(3.0, 2.0, size=n)
    b = rng.uniform(-5, 10, size=n)
    c = rng.integers(0, 100, size=n).astype(float)
    return pd.DataFrame({"a": a, "label": a + 10 * b + 100 * c, "b": b, "c": c})


@pytest.fixture(params=["csv", "parquet"])
def table(request, tmp_path):
    df = frame()
    path = tmp_path / f"table.{request.param}"
    if request.param == "csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)
    return path, df


def load_file(path, **options):
    options.setdefault("target", "label")
    return make_dataset("file", data.File(path=str(path), **options), data_rng(0))


def test_file_features_default_to_all_other_columns(table):
    path, df = table
    ds = load_file(path, test_fraction=0.25, standardize=False)
    assert ds.info["features"] == ["a", "b", "c"]
    assert ds.d == 3
    assert ds.n == 15 and ds.X_test.shape == (5, 3)
    # rows stay whole and aligned with their labels, and the split is a partition
    X = np.concatenate([ds.X, ds.X_test])
    y = np.concatenate([ds.y, ds.y_test])
    np.testing.assert_allclose(y, X[:, 0] + 10 * X[:, 1] + 100 * X[:, 2])
    order = np.lexsort(X.T[::-1])
    expected = df[["a", "b", "c"]].to_numpy()
    np.testing.assert_allclose(X[order], expected[np.lexsort(expected.T[::-1])])


def test_file_explicit_features(table):
    path, df = table
    ds = load_file(path, features=("c", "a"), test_fraction=0.0, standardize=False)
    assert ds.info["features"] == ["c", "a"]
    assert ds.X.shape == (20, 2) and ds.X_test.shape == (0, 2) and ds.y_test.shape == (0,)
    # with no test rows, train is a permutation of all rows, columns in the given order
    by_label = dict(zip(df["label"], df[["c", "a"]].to_numpy().tolist()))
    for row, label in zip(ds.X.tolist(), ds.y.tolist()):
        assert row == by_label[label]


@pytest.mark.parametrize("fraction, n_test", [(0.0, 0), (0.1, 2), (0.25, 5), (0.5, 10), (0.9, 18)])
def test_file_test_fraction_split_sizes(table, fraction, n_test):
    path, _ = table
    ds = load_file(path, test_fraction=fraction)
    assert ds.X_test.shape[0] == ds.y_test.shape[0] == n_test
    assert ds.X.shape[0] == ds.y.shape[0] == 20 - n_test


def test_file_split_is_deterministic_and_seeded(table):
    path, _ = table
    a = load_file(path)
    b = load_file(path)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    c = make_dataset("file", data.File(path=str(path), target="label"), data_rng(1))
    assert not np.array_equal(np.sort(a.y_test), np.sort(c.y_test))


def test_file_standardisation_uses_train_rows_only(table):
    path, df = table
    ds = load_file(path, test_fraction=0.3)
    np.testing.assert_allclose(ds.X.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(ds.X.std(axis=0), 1.0, rtol=1e-12)
    raw = load_file(path, test_fraction=0.3, standardize=False)
    np.testing.assert_array_equal(ds.y, raw.y)
    mean, std = raw.X.mean(axis=0), raw.X.std(axis=0)
    np.testing.assert_allclose(ds.info["mean"], mean)
    np.testing.assert_allclose(ds.info["std"], std)
    # the test rows are scaled with the train statistics, not their own
    np.testing.assert_allclose(ds.X_test, (raw.X_test - mean) / std, rtol=1e-12)
    assert not np.allclose(ds.X_test.mean(axis=0), 0.0, atol=1e-6)
    # statistics from all rows would differ from those of the train rows
    all_mean = df[["a", "b", "c"]].to_numpy().mean(axis=0)
    assert not np.allclose(ds.info["mean"], all_mean)


def test_file_constant_column_is_not_divided_by_zero(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"x": np.arange(10.0), "k": 7.0, "y": np.arange(10.0)}).to_csv(path, index=False)
    ds = make_dataset("file", data.File(path=str(path), target="y"), data_rng(0))
    assert np.isfinite(ds.X).all() and np.isfinite(ds.X_test).all()
    np.testing.assert_array_equal(ds.X[:, 1], 0.0)


def test_missing_target_column(table):
    path, _ = table
    with pytest.raises(UserError) as info:
        load_file(path, target="price")
    message = str(info.value)
    assert "'price'" in message and str(path) in message
    assert "a, label, b, c" in message  # says which columns there are


def test_missing_feature_column(table):
    path, _ = table
    with pytest.raises(UserError, match="data.features") as info:
        load_file(path, features=("a", "zz"))
    assert "zz" in str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(UserError, match="not found") as info:
        load_file(path)
    assert str(path) in str(info.value)


def test_non_numeric_data(tmp_path):
    path = tmp_path / "words.csv"
    path.write_text("x,colour,y\n1,red,0\n2,blue,1\n3,red,0\n4,green,1\n")
    with pytest.raises(UserError) as info:
        load_file(path, target="y")
    message = str(info.value)
    assert "numeric" in message and str(path) in message
    # naming only the numeric columns works
    ds = load_file(path, target="y", features=("x",), test_fraction=0.0, standardize=False)
    np.testing.assert_array_equal(np.sort(ds.X[:, 0]), [1, 2, 3, 4])


def test_non_numeric_target(tmp_path):
    path = tmp_path / "words.parquet"
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": ["a", "b", "c"]}).to_parquet(path)
    with pytest.raises(UserError, match="numeric"):
        load_file(path, target="y")


def test_missing_values(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("x,y\n1,0\n,1\n3,0\n")
    with pytest.raises(UserError, match="missing or non-finite"):
        load_file(path, target="y")


def test_unknown_extension_and_malformed_file(tmp_path):
    path = tmp_path / "table.xlsx"
    path.write_text("x,y\n1,2\n")
    with pytest.raises(UserError, match="neither CSV"):
        load_file(path, target="y")
    bad = tmp_path / "bad.parquet"
    bad.write_text("this is not parquet")
    with pytest.raises(UserError, match="cannot read data file"):
        load_file(bad, target="y")


def test_no_training_rows_left(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("x,y\n")
    with pytest.raises(UserError, match="no rows"):
        load_file(path, target="y")


def test_file_options_are_checked():
    with pytest.raises(UserError, match="data.path"):
        data.File(target="y").check()
    with pytest.raises(UserError, match="data.target"):
        data.File(path="x.csv").check()
    with pytest.raises(UserError, match="test_fraction"):
        data.File(path="x.csv", target="y", test_fraction=1.0).check()
