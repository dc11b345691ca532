"""`python -m careforall` runs the command line."""

from careforall.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
