"""``ast.parse`` for the tests that read the package's source."""

from __future__ import annotations

import ast
import gc


def parse(source: str, filename: str = "<unknown>") -> ast.Module:
    """``ast.parse`` with the garbage collector paused. CPython 3.11's AST constructor compares
    its recursion depth before and after, and a collection in between that runs a finalizer (a
    database connection an earlier test left to the collector, in the same pytest worker) breaks
    that check: ``SystemError: AST constructor recursion depth mismatch`` (CPython gh-106905)."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(source, filename=filename)
    finally:
        if enabled:
            gc.enable()
