"""A write batch that hits a full disk answers every job with an error.

SQLite may roll back a whole transaction after an I/O error; jobs that ran
earlier in the batch must not be told they succeeded. The disk is "full"
through RLIMIT_FSIZE in a child process, so the test runner is untouched.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CHILD = Path(__file__).with_name("disk_full_child.py")


def test_no_job_is_acknowledged_when_the_disk_fills_mid_batch(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(CHILD), str(tmp_path / "full.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for answer, name in zip(result["answers"], ("first", "big", "third"), strict=True):
        if answer == "ok":
            # Anything acknowledged must really be in the database.
            assert name == "big" or result["stored"][name] == 1, result
    assert result["answers"][1] != "ok", result  # the write that filled the disk
    acknowledged = [a for a in result["answers"] if a == "ok"]
    assert len(acknowledged) <= sum(result["stored"].values()), result
