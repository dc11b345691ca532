"""Where the server's time goes: py-spy samples during a load run, summarised."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")

# Where a sample's time goes: the first match walking from the innermost frame
# outwards. py-spy prints paths relative to sys.path ("graphql/...").
_SQLITE_CALLS = {"do_execute", "do_execute_no_params", "do_commit", "do_rollback"}
_LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("GraphQL parsing", ("graphql/language/parser.py", "graphql/language/lexer.py")),
    (
        "GraphQL validation",
        (
            "graphql/validation/",
            "graphql/language/visitor.py",
            "graphql/utilities/type_info.py",
        ),
    ),
    ("GraphQL execution", ("graphql/execution/",)),
    ("Strawberry", ("strawberry/",)),
    ("SQLAlchemy / SQLModel", ("sqlalchemy/", "sqlmodel/")),
    ("careforall code", ("careforall/",)),
    ("Starlette", ("starlette/",)),
    ("uvicorn / httptools (HTTP, socket writes)", ("uvicorn/",)),
    ("PyJWT", ("jwt/",)),
    ("json", ("json/",)),
    (
        "worker threads waiting (thread pool, locks)",
        ("threading.py", "concurrent/futures/", "anyio/", "queue.py"),
    ),
    ("event loop (uvloop in C: polling, socket I/O)", ("asyncio/",)),
    ("transitions (state machine)", ("transitions/",)),
    ("prometheus_client", ("prometheus_client/",)),
]


def available() -> bool:
    return shutil.which("py-spy") is not None


def start(pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes]:
    """Sample `pid` for `seconds` (raw collapsed stacks into `output`)."""
    return subprocess.Popen(
        [
            "py-spy",
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            "200",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _parse_frame(frame: str) -> tuple[str, str]:
    """(function, file) of one `func (path/file.py:123)` frame."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), ""
    return match["func"], match["file"]


def _layer(frames: list[tuple[str, str]]) -> str:
    """The layer a sample's time belongs to (see `_LAYERS`)."""
    for func, path in reversed(frames):
        if func in _SQLITE_CALLS and path.startswith("sqlalchemy/"):
            return "SQLite calls (execute, commit: C code and fsync)"
        for name, prefixes in _LAYERS:
            if path.startswith(prefixes):
                return name
    return "other"


def _short(func: str, path: str) -> str:
    return f"{func} ({path})"


def summarise(raw: Path, top: int = 15) -> dict[str, Any]:
    """Time per layer, the busiest functions (self time), and the share of
    samples inside each careforall API/service function."""
    self_time: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [_parse_frame(f) for f in stack.split(";") if f]
        if not frames:
            continue
        count = int(count_text)
        total += count
        func, path = frames[-1]
        self_time[_short(func, path)] += count
        layers[_layer(frames)] += count
        inside = {
            _short(func, path)
            for func, path in frames
            if path.startswith(
                (
                    "careforall/api/",
                    "careforall/services/",
                    "careforall/outbox/",
                    "careforall/endpoints/",
                    "careforall/payments/",
                )
            )
        }
        for key in inside:
            inclusive[key] += count

    # Frames in nearly every sample are wrappers (middleware): not news.
    for key in [k for k, n in inclusive.items() if n >= 0.9 * total]:
        del inclusive[key]

    def shares(counter: Counter[str], n: int = top) -> list[dict[str, Any]]:
        return [
            {"frame": name, "samples": k, "share": round(k / total, 3)}
            for name, k in counter.most_common(n)
        ]

    return {
        "samples": total,
        "layers": shares(layers, len(layers)),
        "self": shares(self_time),
        "inside": shares(inclusive),
    }
