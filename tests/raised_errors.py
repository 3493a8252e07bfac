"""Exceptions as a real ``raise`` leaves them, for tests of how errors are read."""

from __future__ import annotations


def raised(error: BaseException, cause: BaseException | None = None) -> BaseException:
    """``error`` as raised (``from cause``), with its chain set as a real raise sets it."""
    try:
        raise error from cause
    except BaseException as caught:
        return caught
