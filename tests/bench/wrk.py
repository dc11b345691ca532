"""Drive load with `wrk` (C, LuaJIT scripts) and read its report.

Every script is the generated `BENCH` table, then `lua/common.lua` (response
checks, pacing, the JSON report), then the scenario's own Lua.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LUA_DIR = Path(__file__).resolve().parent / "lua"
MARKER = "BENCH_JSON "


class WrkMissing(RuntimeError):
    pass


def wrk_version() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkMissing(
            "wrk is not installed: `apt-get install -y wrk` (Debian/Ubuntu) first"
        )
    out = subprocess.run([path, "--version"], capture_output=True, text=True)
    return (out.stdout or out.stderr).splitlines()[0].strip()


def lua_literal(value: Any) -> str:
    """A Python value (str, int, float, bool, None, list, tuple, dict) as Lua."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        level = 0
        while f"]{'=' * level}]" in value:
            level += 1
        eq = "=" * level
        # A long string drops a newline right after its opening bracket.
        return f"[{eq}[\n{value}]{eq}]"
    if isinstance(value, Mapping):
        items = ", ".join(f"{_lua_key(k)} = {lua_literal(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, list | tuple):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    raise TypeError(f"no Lua form for {type(value).__name__}")


def _lua_key(key: Any) -> str:
    if isinstance(key, str) and key.isidentifier():
        return key
    return f"[ {lua_literal(key)} ]"


def write_data_file(path: Path, rows: Sequence[Sequence[str]]) -> Path:
    """One row per line, fields separated by tabs (read by `read_rows` in Lua)."""
    with path.open("w") as out:
        for row in rows:
            if any("\t" in f or "\n" in f for f in row):
                raise ValueError("data fields must not hold tabs or newlines")
            out.write("\t".join(row))
            out.write("\n")
    return path


@dataclass
class WrkRun:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float
    socket_errors: dict[str, int]
    bad: int  # non-2xx answers, or GraphQL errors in a 200
    duplicates: int
    behind: int  # fixed-rate runs: requests sent more than 1 ms after their slot
    max_lag_ms: float
    reused: int
    sample: str

    @property
    def failures(self) -> int:
        """Errors and refused or failed answers; timeouts are timings, not here."""
        errors = self.socket_errors
        return self.bad + errors["connect"] + errors["read"] + errors["write"]

    @property
    def timeouts(self) -> int:
        return self.socket_errors["timeout"]

    @classmethod
    def parse(cls, report: dict[str, Any]) -> WrkRun:
        seconds = report["duration_us"] / 1e6
        lat = report["latency_us"]
        errors = report["errors"]
        # wrk counts non-2xx/3xx answers in "status"; our response() hook
        # counts them in "bad" too, so drop it here to count each failure once.
        socket_errors = {k: int(v) for k, v in errors.items() if k != "status"}
        return cls(
            requests=int(report["requests"]),
            seconds=seconds,
            rps=report["requests"] / seconds if seconds else 0.0,
            p50_ms=lat["p50"] / 1000,
            p90_ms=lat["p90"] / 1000,
            p99_ms=lat["p99"] / 1000,
            p999_ms=lat["p999"] / 1000,
            max_ms=lat["max"] / 1000,
            mean_ms=lat["mean"] / 1000,
            socket_errors=socket_errors,
            bad=int(report["bad"]),
            duplicates=int(report["duplicates"]),
            behind=int(report["behind"]),
            max_lag_ms=float(report["max_lag_ms"]),
            reused=int(report["reused"]),
            sample=str(report["sample"]),
        )


@dataclass
class Summary:
    """Several runs of one scenario: medians, plus every run."""

    runs: list[WrkRun] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return statistics.median(r.rps for r in self.runs) if self.runs else 0.0

    @property
    def p50_ms(self) -> float:
        return statistics.median(r.p50_ms for r in self.runs) if self.runs else 0.0

    @property
    def p99_ms(self) -> float:
        return statistics.median(r.p99_ms for r in self.runs) if self.runs else 0.0

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.runs)

    @property
    def failures(self) -> int:
        return sum(r.failures for r in self.runs)

    @property
    def timeouts(self) -> int:
        return sum(r.timeouts for r in self.runs)

    def sample(self) -> str:
        return next((r.sample for r in self.runs if r.sample), "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "requests": self.requests,
            "failures": self.failures,
            "timeouts": self.timeouts,
            "runs": [asdict(r) for r in self.runs],
        }


@dataclass
class Wrk:
    workdir: Path
    threads: int
    timeout: float

    def script(self, name: str, settings: dict[str, Any]) -> Path:
        settings = {"threads": self.threads, **settings}
        text = "\n".join(
            [
                f"BENCH = {lua_literal(settings)}",
                (LUA_DIR / "common.lua").read_text(),
                (LUA_DIR / f"{name}.lua").read_text(),
            ]
        )
        path = self.workdir / f"{name}-{uuid.uuid4().hex[:8]}.lua"
        path.write_text(text)
        return path

    def run(
        self,
        url: str,
        script: Path,
        *,
        duration: float,
        connections: int,
    ) -> WrkRun:
        connections = max(connections, self.threads)
        command = [
            "wrk",
            "-t",
            str(self.threads),
            "-c",
            str(connections),
            "-d",
            f"{max(1, round(duration))}s",
            "--timeout",
            f"{max(1, round(self.timeout))}s",
            "-s",
            str(script),
            url,
        ]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=duration + 120
        )
        for line in done.stdout.splitlines():
            if line.startswith(MARKER):
                return WrkRun.parse(json.loads(line[len(MARKER) :]))
        raise RuntimeError(
            f"wrk gave no report (exit {done.returncode}):\n"
            f"{done.stdout}\n{done.stderr}"
        )
