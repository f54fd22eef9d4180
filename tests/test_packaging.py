"""How nnkit is installed and imported: its distribution name, the dependencies'
bounds, and imports that never pick up the wrong thing."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import nnkit
from nnkit import backends
from nnkit.about import DISTRIBUTION, install_hint

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_distribution_name_is_not_the_unrelated_nnkit():
    assert PROJECT["name"] == DISTRIBUTION != "nnkit"
    assert PROJECT["scripts"] == {"nnkit": "nnkit.cli:main"}
    assert install_hint("cuda12") == f"pip install '{DISTRIBUTION}[cuda12]'"
    for name in ("cupy", "cuda"):  # the hints of messages use it
        assert DISTRIBUTION in backends.REGISTRY[name].install


def test_only_known_breaks_are_capped():
    """Lower bounds everywhere; an upper bound only for NumPy in the CUDA extras
    (numba-cuda 0.30 calls numpy.row_stack, which NumPy 2.5 removed)."""
    extras = PROJECT["optional-dependencies"]
    for requirement in PROJECT["dependencies"] + extras["test"] + extras["docs"]:
        assert ">=" in requirement and "<" not in requirement.replace("<=", ""), requirement
    for extra in ("cuda12", "cuda13"):
        capped = [r for r in PROJECT["optional-dependencies"][extra] if "<" in r]
        assert capped == ["numpy<2.5"], capped
    for requirement in PROJECT["optional-dependencies"]["bench"]:
        assert ">=" in requirement and "==" not in requirement, requirement


def test_the_citation_and_the_changelog_name_this_version():
    citation = (ROOT / "CITATION.cff").read_text()
    assert f"\nversion: {nnkit.__version__}\n" in citation and "cff-version: 1.2.0" in citation
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{nnkit.__version__}]" in changelog and "## [Unreleased]" in changelog


def test_the_folder_above_a_checkout_does_not_shadow_nnkit(tmp_path):
    """A checkout cloned into a folder called nnkit, and Python started in the folder
    that holds it: ``import nnkit`` is the package, not an empty namespace package."""
    (tmp_path / "nnkit").mkdir()
    done = subprocess.run([sys.executable, "-c", "import nnkit; print(nnkit.__file__, nnkit.__version__)"],
                          cwd=tmp_path, capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    file, version = done.stdout.split()
    assert Path(file) == Path(nnkit.__file__) and version == nnkit.__version__


def test_import_pulls_in_neither_cupy_nor_numba_nor_matplotlib_nor_scipy():
    code = (
        "import sys, nnkit, nnkit.cli, nnkit.backends;"
        "nnkit.backends.get('numpy');"
        "bad = [m for m in ('cupy', 'numba', 'matplotlib', 'scipy') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ci_runs_the_readme_test_command_and_builds_the_docs():
    """The README's fresh-machine test command is the one CI runs, so that it stays true."""
    readme = (ROOT / "README.md").read_text()
    blocks = readme.split("```")[1::2]
    commands = [b.strip() for b in blocks if "pytest" in b and "venv" in b]
    assert commands, "the README gives no test command"
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[0] in ci
    assert "sphinx -W" in ci and "nnkit/docs" in ci
    first = [b.strip() for b in blocks][:3]
    assert any("nnkit run experiments/quickstart.toml" in b for b in first[:2]), first
