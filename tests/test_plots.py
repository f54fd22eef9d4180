"""Figures are drawn from a finished run."""

from __future__ import annotations

from click.testing import CliRunner

from nnkit import config, load, run_experiment
from nnkit.cli import main
from nnkit.plots import plot_run

EXPERIMENT = """
name = "fig"
inits = 12
[data]
kind = "xor"
[model]
hidden = [2]
activation = "sigmoid"
[train]
lr = 1.0
max_steps = 60
history = 6
[sweep]
"train.lr" = [0.5, 1.0]
"""


def test_plot_run_writes_png_files(tmp_path):
    path = tmp_path / "fig.toml"
    path.write_text(EXPERIMENT)
    run = load(run_experiment(config.load(path), results_dir=tmp_path, progress=False))
    files = plot_run(run)
    assert [f.name for f in files] == ["final_loss.png", "training.png"]
    for f in files:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = CliRunner().invoke(main, ["plot", str(run.path)])
    assert result.exit_code == 0, result.output
    assert "final_loss.png" in result.output
