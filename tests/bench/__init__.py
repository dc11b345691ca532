"""The CareForAll benchmark: `python -m tests.bench` (full) or `--smoke` (CI).

It serves a fresh database with `careforall serve`, drives it with `wrk`, and
compares every scenario with floors measured in the same run.
"""
