"""One-line user errors and the entry-point wrapper that prints them."""

from __future__ import annotations

import errno
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
    except UnicodeDecodeError as err:  # a reader without its own message: still one line
        print(f"error: input is not UTF-8 text (byte offset {err.start} of the text being "
              f"read: {err.reason})", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        # a write outside amuro.io's atomic outputs: name what the OS names
        where = err.filename or "an output"
        print(f"error: {where}: disk full (no space left on device); nothing usable was "
              "written", file=sys.stderr)
        raise SystemExit(2) from None
