"""The command line's one error boundary: an expected error becomes one line on stderr and exit code 1.

Expected errors are what bad input raises: our own (`AudioError`, `AnnotationError`, `AdapterError`, ... all
`ValueError`), missing or unwritable files (`OSError`), unreadable CSV, YAML or safetensors files, unknown
users. Anything else is a bug and keeps its traceback. `DSAML_DEBUG=1` shows the traceback of expected errors
too, for whoever reports one.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

from dsaml.errors import expected_errors, one_line

__all__ = ["reports_errors"]


def reports_errors(prog: str) -> Callable:
    """Decorate a command's `main(argv) -> int`: expected errors print `<prog>: error: <message>`, return 1."""

    def decorate(main: Callable[..., int | None]) -> Callable[..., int]:
        @functools.wraps(main)
        def wrapped(argv: list[str] | None = None) -> int:
            try:
                return int(main(argv) or 0)
            except expected_errors() as exc:
                if os.environ.get("DSAML_DEBUG"):
                    raise
                print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
                return 1

        return wrapped

    return decorate
