"""Experiment files: validation, messages, ``--set`` overrides, sweeps, round trips."""

from __future__ import annotations

import dataclasses
import json
import textwrap

import numpy as np
import pytest

from nnkit import data
from nnkit.core.init import InitSpec
from nnkit.core.losses import ObjectiveSpec
from nnkit.core.seeding import data_rng
from nnkit.errors import ConfigError, UserError
from nnkit.study import config
from nnkit.training import TrainConfig

BASE = """
name = "tiny"
seed = 3
inits = 5

[data]
kind = "teacher_student"
d = 2
n = 20
n_test = 10
teacher_width = 2

[model]
hidden = [3]
activation = "tanh"

[train]
lr = 0.05
max_steps = 50

[run]
backend = "numpy"
"""


def write(tmp_path, text, name="exp.toml"):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def load_with(tmp_path, *overrides, text=BASE):
    return config.load(write(tmp_path, text), overrides=list(overrides))


def error_of(tmp_path, *overrides, text=BASE) -> str:
    with pytest.raises(ConfigError) as info:
        load_with(tmp_path, *overrides, text=text)
    message = str(info.value)
    assert "\n" not in message.strip()
    return message


# -- a valid file ----------------------------------------------------------------


def test_valid_file_is_read_with_explicit_defaults(tmp_path):
    exp = load_with(tmp_path)
    assert exp.name == "tiny" and exp.seed == 3 and exp.inits == 5
    assert exp.data_kind == "teacher_student"
    assert exp.data == data.TeacherStudent(d=2, n=20, n_test=10, teacher_width=2)
    assert exp.model.hidden == (3,)
    assert exp.model.activation == "tanh"
    assert exp.train.lr == 0.05 and isinstance(exp.train.lr, float)
    assert exp.train.max_steps == 50
    assert exp.train.method == "gd"  # default
    assert exp.objective == ObjectiveSpec()
    assert exp.init == InitSpec()
    assert exp.run.backend == "numpy"
    assert exp.sweep == ()


def test_name_defaults_to_file_stem(tmp_path):
    path = write(tmp_path, "inits = 2\n", name="my_study.toml")
    exp = config.load(path)
    assert exp.name == "my_study"
    assert exp.inits == 2
    assert exp.data_kind == "teacher_student"


def test_int_is_accepted_for_float_key(tmp_path):
    exp = load_with(tmp_path, "train.lr=1")
    assert exp.train.lr == 1.0 and isinstance(exp.train.lr, float)


# -- unknown keys ----------------------------------------------------------------


def test_unknown_top_level_key(tmp_path):
    message = error_of(tmp_path, text=BASE.replace('name = "tiny"', 'name = "tiny"\nfoo = 1'))
    assert "'foo'" in message
    for allowed in ("name", "seed", "inits", "data", "model", "train", "sweep"):
        assert allowed in message


def test_unknown_section_key_names_dotted_key_and_allowed_keys(tmp_path):
    text = BASE.replace("max_steps = 50", "max_steps = 50\nfoo = 2")
    message = error_of(tmp_path, text=text)
    assert "train.foo" in message
    allowed = message.split("allowed", 1)[1]
    for key in (f.name for f in dataclasses.fields(TrainConfig)):
        assert key in allowed


def test_unknown_data_key_lists_keys_of_that_kind(tmp_path):
    message = error_of(tmp_path, "data.labels='01'")
    assert "data.labels" in message
    assert "teacher_width" in message


def test_section_that_is_not_a_table(tmp_path):
    message = error_of(tmp_path, "objective=3")
    assert "objective" in message


# -- bad values ------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, key, allowed",
    [
        ("train.method='adam'", "train.method", ["'gd'", "'momentum'", "'nesterov'", "'sgd'"]),
        ("objective.loss='hinge'", "objective.loss", ["'squared'", "'logistic'"]),
        ("init.scale='xavier'", "init.scale", ["'lecun'", "'he'", "'glorot'", "'fixed'"]),
        ("train.dtype='float16'", "train.dtype", ["'float64'", "'float32'"]),
    ],
)
def test_bad_literal_names_key_and_allowed_values(tmp_path, override, key, allowed):
    message = error_of(tmp_path, override)
    assert key in message
    assert override.split("=")[1] in message  # the offending value
    for value in allowed:
        assert value in message


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.max_steps='10'", "train.max_steps"),
        ("inits='5'", "inits"),
        ("train.max_steps=true", "train.max_steps"),
        ("inits=true", "inits"),
        ("seed=false", "seed"),
        ("train.max_steps=2.5", "train.max_steps"),
        ("train.lr='fast'", "train.lr"),
        ("train.lr=true", "train.lr"),
        ("model.bias=1", "model.bias"),
        ("model.hidden=['a']", "model.hidden"),
        ("name=3", "name"),
    ],
)
def test_wrong_type_is_an_error(tmp_path, override, key):
    message = error_of(tmp_path, override)
    assert message.startswith(key + " = ")
    assert "expected" in message


def test_wrong_type_message_says_what_is_expected(tmp_path):
    assert "an integer" in error_of(tmp_path, "train.max_steps='10'")
    assert "an integer" in error_of(tmp_path, "train.max_steps=true")
    assert "a number" in error_of(tmp_path, "train.lr='fast'")


@pytest.mark.parametrize("lr", ["-0.1", "-1", "0", "0.0"])
def test_non_positive_lr_is_an_error(tmp_path, lr):
    message = error_of(tmp_path, f"train.lr={lr}")
    assert "train.lr" in message


def test_nan_lr_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="train.lr"):
        load_with(tmp_path, "train.lr=nan")


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.momentum=1.5", "train.momentum"),
        ("train.batch_size=0", "train.batch_size"),
        ("train.max_steps=-1", "train.max_steps"),
        ("objective.l2=-0.1", "objective.l2"),
        ("init.std=-1", "init.std"),
        ("run.memory_mb=0", "run.memory_mb"),
        ("inits=0", "inits"),
        ("seed=-1", "seed"),
        ("data.n=0", "data.n"),
        ("data.noise=-1", "data.noise"),
    ],
)
def test_out_of_range_values(tmp_path, override, key):
    assert key in error_of(tmp_path, override)


def test_activation_list_of_wrong_length(tmp_path):
    message = error_of(tmp_path, "model.hidden=[3, 3]", "model.activation=['relu']")
    assert "model.activation" in message
    assert "1 entries" in message and "2 hidden layers" in message


def test_bias_list_of_wrong_length(tmp_path):
    message = error_of(tmp_path, "model.bias=[true, false, true]")
    assert "model.bias" in message


def test_per_layer_lists_of_right_length(tmp_path):
    exp = load_with(
        tmp_path, "model.hidden=[3, 2]", "model.activation=['relu', 'tanh']", "model.bias=[true, false]"
    )
    assert exp.model.hidden == (3, 2)
    assert exp.model.activation == ("relu", "tanh")
    assert exp.model.bias == (True, False)
    assert exp.model.per_layer("activation") == ("relu", "tanh")
    model = exp.build_model(2)
    # W1 (2x3) + b1 (3) + W2 (3x2), no b2, + W_out (2)
    assert model.layout.size == 6 + 3 + 6 + 2


def test_unknown_activation_lists_allowed(tmp_path):
    message = error_of(tmp_path, "model.activation='swish'")
    assert "model.activation" in message and "'swish'" in message
    assert "relu" in message and "tanh" in message


def test_unknown_data_kind(tmp_path):
    message = error_of(tmp_path, "data.kind='spiral'")
    assert "data.kind" in message and "'spiral'" in message
    for kind in ("teacher_student", "xor", "sine", "blobs", "file"):
        assert kind in message


def test_data_kind_of_wrong_type_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="data.kind"):
        load_with(tmp_path, "data.kind=['xor']")


def test_orthonormal_teacher_wider_than_d_is_config_error(tmp_path):
    message = error_of(tmp_path, "data.teacher_weights='orthonormal'", "data.teacher_width=3")
    assert "teacher_width" in message


def test_fixed_output_with_output_bias_is_an_error(tmp_path):
    message = error_of(tmp_path, "model.output='fixed'", "model.output_bias=true")
    assert "model.output_bias" in message


def test_unknown_backend_in_file(tmp_path):
    message = error_of(tmp_path, "run.backend='tpu'")
    assert "run.backend" in message and "numpy" in message


def test_bad_name(tmp_path):
    assert "name" in error_of(tmp_path, "name='a/b'")


def test_invalid_toml_is_config_error(tmp_path):
    path = write(tmp_path, "name = \ninits = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(path)


def test_missing_file_is_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        config.load(tmp_path / "nope.toml")


# -- overrides -------------------------------------------------------------------


def test_override_dotted_keys_and_top_level(tmp_path):
    exp = load_with(tmp_path, "train.lr=0.5", "inits=7", "seed = 11", "data.n=12")
    assert exp.train.lr == 0.5
    assert exp.inits == 7
    assert exp.seed == 11
    assert exp.data.n == 12
    assert exp.model.hidden == (3,)  # untouched


def test_override_creates_missing_table(tmp_path):
    exp = load_with(tmp_path, "objective.l2=0.01", "init.scale=he")
    assert exp.objective.l2 == 0.01
    assert exp.init.scale == "he"  # bare word taken as a string


def test_override_bare_string_and_toml_values(tmp_path):
    exp = load_with(tmp_path, "model.activation=relu", "train.method=\"momentum\"", "model.hidden=[4, 2]")
    assert exp.model.activation == "relu"
    assert exp.train.method == "momentum"
    assert exp.model.hidden == (4, 2)


def test_later_override_wins(tmp_path):
    assert load_with(tmp_path, "train.lr=0.5", "train.lr=0.25").train.lr == 0.25


def test_scalar_hidden_becomes_tuple(tmp_path):
    exp = load_with(tmp_path, "model.hidden=8")
    assert exp.model.hidden == (8,)
    text = BASE.replace("hidden = [3]", "hidden = 6")
    assert load_with(tmp_path, text=text).model.hidden == (6,)


def test_override_without_equals_is_error(tmp_path):
    message = error_of(tmp_path, "train.lr")
    assert "key=value" in message and "train.lr" in message


def test_override_with_empty_key_is_error(tmp_path):
    assert "key=value" in error_of(tmp_path, "=3")


def test_override_below_a_non_table_is_error(tmp_path):
    message = error_of(tmp_path, "model.hidden.x=3")
    assert "model.hidden.x" in message


def test_override_with_unknown_key_is_error(tmp_path):
    assert "train.speed" in error_of(tmp_path, "train.speed=3")


def test_overrides_are_validated(tmp_path):
    assert "train.lr" in error_of(tmp_path, "train.lr=-3")


# -- sweeps ----------------------------------------------------------------------


SWEEP = BASE + """
[sweep]
"train.lr" = [0.01, 0.1]
"model.hidden" = [[2], [4, 3], 5]
inits = [2, 3]
"""


def test_sweep_is_cartesian_product(tmp_path):
    exp = load_with(tmp_path, text=SWEEP)
    assert dict(exp.sweep) == {
        "train.lr": (0.01, 0.1),
        "model.hidden": ((2,), (4, 3), 5),
        "inits": (2, 3),
    }
    points = config.expand_sweep(exp)
    assert len(points) == 2 * 3 * 2
    seen = []
    for values, point in points:
        assert set(values) == {"train.lr", "model.hidden", "inits"}
        assert point.train.lr == values["train.lr"]
        hidden = values["model.hidden"]
        assert point.model.hidden == (hidden if isinstance(hidden, tuple) else (hidden,))
        assert point.inits == values["inits"]
        assert point.sweep == ()
        # everything that is not swept is as in the file
        assert point.name == "tiny" and point.seed == 3
        assert point.data == exp.data
        assert point.model.activation == "tanh"
        assert point.train.max_steps == 50
        assert point.run == exp.run
        seen.append((values["train.lr"], values["model.hidden"], values["inits"]))
    # itertools.product order: first key slowest
    expected = [
        (lr, h, i) for lr in (0.01, 0.1) for h in ((2,), (4, 3), 5) for i in (2, 3)
    ]
    assert seen == expected


def test_no_sweep_is_one_point(tmp_path):
    exp = load_with(tmp_path)
    points = config.expand_sweep(exp)
    assert points == [({}, exp)]


def test_sweep_as_nested_table_equals_quoted_keys(tmp_path):
    quoted = load_with(tmp_path, text=BASE + '\n[sweep]\n"train.lr" = [0.1, 0.2]\n')
    nested = load_with(tmp_path, text=BASE + "\n[sweep.train]\nlr = [0.1, 0.2]\n")
    via_set = load_with(tmp_path, "sweep.train.lr=[0.1, 0.2]")
    assert quoted == nested == via_set
    assert [p.train.lr for _, p in config.expand_sweep(via_set)] == [0.1, 0.2]


@pytest.mark.parametrize("key", ["nope", "train.nope", "nope.lr", "train.lr.x"])
def test_sweep_key_naming_no_config_key_is_error(tmp_path, key):
    message = error_of(tmp_path, text=BASE + f'\n[sweep]\n"{key}" = [1, 2]\n')
    assert key in message


def test_sweep_values_must_be_non_empty_list(tmp_path):
    assert "sweep.train.lr" in error_of(tmp_path, text=BASE + '\n[sweep]\n"train.lr" = 0.1\n')
    assert "sweep.train.lr" in error_of(tmp_path, text=BASE + '\n[sweep]\n"train.lr" = []\n')


def test_every_sweep_point_is_validated(tmp_path):
    message = error_of(tmp_path, text=BASE + '\n[sweep]\n"train.lr" = [0.1, -1.0]\n')
    assert "train.lr" in message
    message = error_of(tmp_path, text=BASE + '\n[sweep]\n"train.method" = ["gd", "adam"]\n')
    assert "train.method" in message and "'adam'" in message


# -- round trips -----------------------------------------------------------------


def _all_plain(value):
    if isinstance(value, dict):
        return all(isinstance(k, str) and _all_plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_all_plain(v) for v in value)
    return not isinstance(value, tuple)


def test_to_dict_from_dict_round_trip_with_sweep(tmp_path):
    exp = load_with(tmp_path, text=SWEEP)
    d = exp.to_dict()
    assert _all_plain(d)
    # every default is explicit
    assert set(d["train"]) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(d["model"]) == {f.name for f in dataclasses.fields(config.ModelConfig)}
    assert set(d["data"]) == {"kind"} | {f.name for f in dataclasses.fields(data.TeacherStudent)}
    assert d["sweep"]["model.hidden"] == [[2], [4, 3], 5]
    back = config.from_dict(d)
    assert back == exp
    assert back.to_dict() == d
    # through JSON too (what config.json stores)
    again = config.from_dict(json.loads(json.dumps(d)))
    assert again == exp
    assert config.expand_sweep(again) == config.expand_sweep(exp)


def test_to_dict_from_dict_round_trip_per_layer_lists(tmp_path):
    exp = load_with(
        tmp_path, "model.hidden=[3, 2]", "model.activation=['relu', 'tanh']", "model.bias=[false, true]",
        "objective.l2=0.001", "train.method=sgd", "train.batch_size=4",
    )
    d = exp.to_dict()
    assert _all_plain(d)
    assert "sweep" not in d
    assert d["model"]["activation"] == ["relu", "tanh"]
    assert d["model"]["bias"] == [False, True]
    back = config.from_dict(d)
    assert back == exp
    assert back.to_dict() == d
    # through JSON too (what config.json stores)
    again = config.from_dict(json.loads(json.dumps(d)))
    assert again == exp
    assert config.expand_sweep(again) == config.expand_sweep(exp)


@pytest.mark.parametrize("kind, options", [
    ("xor", {"labels": "pm1", "repeat": 2}),
    ("sine", {"n": 10, "frequency": 2.0}),
    ("blobs", {"d": 3, "n": 10, "separation": 4.0}),
])
def test_round_trip_other_data_kinds(kind, options):
    raw = {"name": "x", "inits": 2, "data": {"kind": kind, **options}}
    exp = config.from_dict(raw)
    assert exp.data_kind == kind
    for key, value in options.items():
        assert getattr(exp.data, key) == value
    assert config.from_dict(exp.to_dict()) == exp


# -- data file paths -------------------------------------------------------------


FILE_EXP = """
name = "own"
inits = 2
[data]
kind = "file"
path = "{path}"
target = "y"
features = ["a", "b"]
"""


def _write_csv(path, n=10):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=n), rng.normal(size=n)
    rows = ["a,b,y"] + [f"{x},{z},{x + 2 * z}" for x, z in zip(a, b)]
    path.write_text("\n".join(rows) + "\n")


def test_relative_data_path_is_resolved_against_experiment_folder(tmp_path, monkeypatch):
    _write_csv(tmp_path / "study" / "inputs" / "table.csv")
    exp_path = write(tmp_path / "study", FILE_EXP.format(path="inputs/table.csv"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    exp = config.load(exp_path)
    assert exp.data.path == str((tmp_path / "study" / "inputs" / "table.csv").resolve())
    assert exp.data.features == ("a", "b")
    ds = data.make_dataset(exp.data_kind, exp.data, data_rng(0))
    assert ds.n + ds.X_test.shape[0] == 10 and ds.d == 2


def test_relative_data_path_from_override_is_resolved_against_experiment_folder(tmp_path, monkeypatch):
    _write_csv(tmp_path / "study" / "other.csv")
    exp_path = write(tmp_path / "study", FILE_EXP.format(path="missing.csv"))
    monkeypatch.chdir(tmp_path)
    exp = config.load(exp_path, ["data.path=other.csv"])
    assert exp.data.path == str((tmp_path / "study" / "other.csv").resolve())


def test_absolute_data_path_is_kept(tmp_path):
    csv = tmp_path / "abs" / "t.csv"
    _write_csv(csv)
    exp = config.load(write(tmp_path / "study", FILE_EXP.format(path=csv.as_posix())))
    assert exp.data.path == str(csv.resolve())
    d = exp.to_dict()
    assert d["data"]["features"] == ["a", "b"]
    assert config.from_dict(d) == exp


def test_file_kind_needs_path_and_target(tmp_path):
    text = 'name = "own"\n[data]\nkind = "file"\ntarget = "y"\n'
    assert "data.path" in error_of(tmp_path, text=text)
    text = 'name = "own"\n[data]\nkind = "file"\npath = "x.csv"\n'
    assert "data.target" in error_of(tmp_path, text=text)


def test_swept_relative_data_paths_are_resolved_against_experiment_folder(tmp_path, monkeypatch):
    _write_csv(tmp_path / "study" / "a.csv")
    _write_csv(tmp_path / "study" / "b.csv")
    text = FILE_EXP.format(path="a.csv") + '\n[sweep]\n"data.path" = ["a.csv", "b.csv"]\n'
    exp_path = write(tmp_path / "study", text)
    monkeypatch.chdir(tmp_path)
    exp = config.load(exp_path)
    paths = [point.data.path for _, point in config.expand_sweep(exp)]
    assert paths == [str((tmp_path / "study" / name).resolve()) for name in ("a.csv", "b.csv")]


@pytest.mark.parametrize(
    "override",
    ["train.lr=inf", "init.gain=inf", "objective.l2=inf", "data.noise=inf",
     "model.output_value=nan", "model.leaky_slope=nan", "train.loss_target=nan",
     "seed=99999999999999999999999"],
)
def test_non_finite_and_out_of_range_values_are_errors(tmp_path, override):
    path = tmp_path / "e.toml"
    path.write_text("[data]\nkind = 'teacher_student'\n")
    with pytest.raises(ConfigError, match=override.split("=")[0].replace(".", r"\.")):
        config.load(path, [override])


def test_infinite_bounds_that_switch_a_rule_off_are_allowed(tmp_path):
    path = tmp_path / "e.toml"
    path.write_text("")
    exp = config.load(path, ["train.max_loss=inf", "train.loss_target=-inf"])
    assert exp.train.max_loss == float("inf") and exp.train.loss_target == float("-inf")
