"""Sphinx configuration of the nnkit documentation site. Build it from the repository
root, with the ``docs`` extra installed (``pip install -e '.[docs]'``)::

    python -m sphinx -W --keep-going -b html nnkit/docs build/docs

``config.md`` is generated at the start of every build from the config dataclasses
(:mod:`nnkit.study.reference`, by ``_ext/config_reference.py``); the tutorial
notebook is stored without outputs and executed during the build.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))  # the local extensions

# the installed nnkit, as the tutorial's kernel sees it
from nnkit.about import __version__

project = "nnkit"
author = "the nnkit authors"
copyright = "the nnkit authors"
release = __version__
version = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_nb",
    "config_reference",
    "docstring_style",
]
exclude_patterns = ["_build", "_ext", "jupyter_execute", ".ipynb_checkpoints", ".gitignore"]

html_theme = "furo"
html_title = f"nnkit {release}"
html_static_path = ["_static"]
html_css_files = ["nnkit.css"]

# the API pages: members in the order of the source, type hints in the signatures
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
napoleon_numpy_docstring = True
napoleon_google_docstring = False
# an "Attributes" section as fields of the class, not as entries beside its members
napoleon_use_ivar = True

# the tutorial is executed whenever it is read (a fresh build always reads it), and a
# failing cell fails the build
nb_execution_mode = "force"
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
