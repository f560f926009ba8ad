"""`python -m bulkops` is the `bulkops` command."""

from __future__ import annotations

from bulkops.cli import main

main()
