"""One-line user errors and the entry-point wrapper that prints them."""

from __future__ import annotations

import sys
from collections.abc import Callable


class AmuroError(Exception):
    """A problem with the user's input: printed as one line, no traceback."""


def run_cli(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run an entry point; turn AmuroError into `error: ...` on stderr and exit status 2."""
    try:
        main(argv)
    except AmuroError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
