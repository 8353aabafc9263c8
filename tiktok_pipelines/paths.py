"""Folders the code reads at run time that live at the repository root: ``assets/`` (the content
taxonomy) and ``dbt_like_models/`` (the SQL models).

``tiktok_pipelines/_data/`` holds a symlink to each; a wheel stores them as folders
(pyproject.toml, ``[tool.setuptools.package-data]``), so the same path works in a checkout, an
editable install and a plain ``pip install .``.
"""

from importlib import resources
from pathlib import Path


def package_data(name: str) -> Path:
    """``assets`` or ``dbt_like_models``: the package's copy (in a checkout the symlink resolved, so
    the path is the repository's folder itself), else the checkout's folder."""
    shipped = Path(str(resources.files("tiktok_pipelines") / "_data" / name))
    return shipped.resolve() if shipped.exists() else Path(__file__).resolve().parents[1] / name
