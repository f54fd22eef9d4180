"""The name and version of the package, and the install hint every message uses."""

__version__ = "0.1.0"

#: the distribution name on PyPI (``nnkit`` there is an unrelated project); the import
#: name and the command stay ``nnkit``
DISTRIBUTION = "nnkit-landscape"


def install_hint(extra: str = "") -> str:
    """``pip install 'nnkit-landscape[extra]'`` (or without the brackets)."""
    return f"pip install '{DISTRIBUTION}[{extra}]'" if extra else f"pip install {DISTRIBUTION}"
