"""GraphQL over HTTP as clients written elsewhere see it, against a real server:
the graphql-http package's audit of the specification (every check passes,
SHOULDs and MAYs included) and Apollo Client's persisted-query link (a hash
first, the document once, then only the hash, over GET).

The clients are npm packages pinned in tests/http_clients/package.json;
`.ci/run` installs them (`npm ci`). Without Node.js or the packages these
tests skip, except in CI, where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests import factories as f
from tests.helpers.api import ServerGQL
from tests.helpers.server import Server

pytestmark = pytest.mark.server

CLIENTS = Path(__file__).resolve().parents[1] / "http_clients"


def node_script(script: str, *args: str) -> Any:
    node = shutil.which("node")
    if node is None or not (CLIENTS / "node_modules").is_dir():
        reason = "Node.js and `npm ci --prefix tests/http_clients` are needed"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    done = subprocess.run(
        [node, str(CLIENTS / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_graphql_over_http_audit_passes_every_check(server: Server) -> None:
    results = node_script("audit.mjs", f"{server.base_url}/graphql")
    failing = [r for r in results if r["status"] != "ok"]
    print(f"graphql-http audit: {len(results)} checks, {len(failing)} not ok")
    assert len(results) >= 50, results  # the audit really ran its checks
    assert failing == []


def test_apollo_persisted_queries_send_the_document_once(
    server: Server, api: ServerGQL
) -> None:
    organiser = f.register(api)
    f.campaign(api, organiser.token, title="Dialysis for Omar")
    run = node_script("apq.mjs", f"{server.base_url}/graphql")
    requests = run["requests"]
    # 1. Only the hash, over GET: the server does not know it yet.
    first = requests[0]
    assert first["method"] == "GET"
    assert "query" not in parse_qs(urlsplit(first["url"]).query)
    assert json.loads(first["answer"])["errors"][0]["extensions"] == {
        "code": "PERSISTED_QUERY_NOT_FOUND"
    }
    # 2. The document with its hash, once.
    assert requests[1]["method"] == "POST"
    assert "query Campaigns" in requests[1]["body"]
    # 3. The second query: the hash alone, over GET, answered in full.
    third = requests[2]
    assert third["method"] == "GET"
    assert "query" not in parse_qs(urlsplit(third["url"]).query)
    assert len(requests) == 3
    for data in (run["first"], run["second"]):
        titles = [e["node"]["title"] for e in data["campaigns"]["edges"]]
        assert titles == ["Dialysis for Omar"]
