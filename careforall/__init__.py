"""CareForAll: a medical fundraising platform that never loses or doubles a donation."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path


def _version() -> str:
    """The version in pyproject.toml, as installed (or read from a checkout)."""
    try:
        return metadata.version("careforall")
    except metadata.PackageNotFoundError:
        import tomllib

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        with pyproject.open("rb") as file:
            return str(tomllib.load(file)["project"]["version"])


__version__ = _version()
