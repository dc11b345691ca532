"""`python -m tests.bench.launch NOFILE PROGRAM ARGS...`: raise the open-files
limit to NOFILE (as far as the hard limit allows), then become PROGRAM.

Thousands of WebSocket subscribers need thousands of descriptors in the server;
exec keeps the process id, so the caller can still read its memory.
"""

from __future__ import annotations

import os
import resource
import sys


def raise_nofile(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards `wanted`; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit("usage: python -m tests.bench.launch NOFILE PROGRAM ARGS...")
    raise_nofile(int(argv[0]))
    os.execvp(argv[1], argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
