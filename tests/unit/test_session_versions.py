"""Guests' token versions remembered by the process that serves an SQLite file."""

from __future__ import annotations

from careforall.session_versions import SessionVersions


def test_a_version_read_is_remembered_until_a_logout() -> None:
    versions = SessionVersions(enabled=True)
    read_at = versions.epoch
    versions.remember("anon_1", 0, read_at=read_at)
    assert versions.get("anon_1") == 0
    versions.ended("anon_1")
    assert versions.get("anon_1") is None


def test_a_read_that_began_before_a_logout_is_not_kept() -> None:
    versions = SessionVersions(enabled=True)
    read_at = versions.epoch  # a request reads version 0 ...
    versions.ended("anon_1")  # ... while the session logs out (now 1)
    versions.remember("anon_1", 0, read_at=read_at)
    assert versions.get("anon_1") is None  # the old version is not believed


def test_only_the_latest_sessions_are_kept() -> None:
    versions = SessionVersions(enabled=True, limit=2)
    for n in range(3):
        versions.remember(f"anon_{n}", 0, read_at=versions.epoch)
    assert versions.get("anon_0") is None
    assert versions.get("anon_1") == 0 and versions.get("anon_2") == 0


def test_nothing_is_remembered_when_other_processes_write() -> None:
    versions = SessionVersions(enabled=False)  # PostgreSQL
    versions.remember("anon_1", 0, read_at=versions.epoch)
    assert versions.get("anon_1") is None
