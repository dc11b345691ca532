"""What a fresh process loads: the app built, one request served."""

from __future__ import annotations

import json
import os
import subprocess
import sys

_SCRIPT = """
import json, sys
from starlette.testclient import TestClient
from careforall.app import create_app
from careforall.settings import Settings
with TestClient(create_app(Settings.from_env())) as client:
    response = client.post("/graphql", json={"query": "{ __typename }"})
    assert response.status_code == 200
print(json.dumps(sorted(sys.modules)))
"""


def modules_after_a_request(db_url: str, *, drop_env: str = "OTEL_") -> set[str]:
    """The modules a new process holds once it has served `{ __typename }`
    on `db_url`, started without the environment variables starting with `drop_env`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop_env)}
    env["CAREFORALL_DATABASE_URL"] = db_url
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def loaded(modules: set[str], package: str) -> list[str]:
    """The modules of `package` among `modules`."""
    return sorted(m for m in modules if m == package or m.startswith(package + "."))
