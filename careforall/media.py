"""Where uploaded files (campaign images) are kept: a small storage interface
and its implementation on a local folder under the data folder.

Another store (an S3-compatible bucket, say) implements `MediaStore` and is
chosen in `runtime.py`; the app keeps serving the files itself at
`/media/<name>`, so pages stay on one origin and the CSP stays strict.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy.engine import make_url

from careforall.settings import Settings

# What a stored file may be called: a content hash, a width and an extension.
# Checked on every read and write, so a name can never leave the folder.
NAME = re.compile(r"[0-9a-f]{32}-[0-9]{2,4}\.(jpg|webp)")


class MediaStore(Protocol):
    """Files written once under a name that says what they hold."""

    def put(self, name: str, data: bytes) -> None:
        """Store `data` as `name`; a name already stored holds the same bytes."""

    def get(self, name: str) -> bytes | None:
        """The bytes stored as `name`, or None."""

    def stored(self) -> Iterator[tuple[str, datetime]]:
        """Every stored file's name and when it was last put."""

    def delete(self, name: str) -> None:
        """Remove `name`; one already gone is no error."""


def data_folder(settings: Settings) -> Path:
    """CAREFORALL_DATA_DIR, else the SQLite file's folder, else the working
    folder (PostgreSQL)."""
    if settings.data_dir:
        return Path(settings.data_dir)
    if settings.is_sqlite:
        name = make_url(settings.database_url).database
        if name and name != ":memory:" and not name.startswith("file:"):
            return Path(name).resolve().parent
    return Path.cwd()


def _checked(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ValueError(f"not a media file name: {name!r}")
    return name


class LocalMediaStore:
    """Files in one folder (`<data folder>/media`), made when first needed."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def for_settings(cls, settings: Settings) -> LocalMediaStore:
        return cls(data_folder(settings) / "media")

    def put(self, name: str, data: bytes) -> None:
        target = self.folder / _checked(name)
        if target.exists():
            # Named by its content: the same bytes are there already. Put
            # again now, though: the sweep of unused files goes by this time.
            os.utime(target)
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        # Written aside, then renamed: a reader never sees half a file.
        fd, temporary = tempfile.mkstemp(dir=self.folder, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def get(self, name: str) -> bytes | None:
        if not NAME.fullmatch(name):
            return None
        try:
            return (self.folder / name).read_bytes()
        except FileNotFoundError:
            return None

    def stored(self) -> Iterator[tuple[str, datetime]]:
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            return
        for entry in entries:
            if NAME.fullmatch(entry.name):
                try:
                    modified = entry.stat().st_mtime
                except FileNotFoundError:
                    continue
                yield entry.name, datetime.fromtimestamp(modified, UTC)

    def delete(self, name: str) -> None:
        (self.folder / _checked(name)).unlink(missing_ok=True)
