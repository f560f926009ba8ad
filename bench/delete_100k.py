"""W1 alone (a background delete of 100,000 products against its raw-SQL limit): the
command README.md gives, now the same as `python -m bench.run --only W1`, whose options it
takes. Its results go to bench/results/partial.json."""

from __future__ import annotations

import sys

from bench.run import main

if __name__ == "__main__":
    main(["--only", "W1", *sys.argv[1:]])
