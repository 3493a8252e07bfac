"""The library's two loggers, and ``CONVOSO_LOG`` to switch them on without code.

``convoso_async`` carries one DEBUG line per HTTP attempt (method, path,
status, attempt, elapsed) and an INFO line per retry. ``convoso_async.audit``
carries one INFO line per campaign status change outcome. Neither ever holds
the auth token, a request body, or a URL with a query.
"""

from __future__ import annotations

import logging
import os

from ._defaults import ENV_LOG

__all__ = ["audit_logger", "configure_from_env", "logger"]

logger = logging.getLogger("convoso_async")
audit_logger = logging.getLogger("convoso_async.audit")

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_configured = False


def configure_from_env() -> None:
    """Attach a stderr handler at the level ``CONVOSO_LOG`` names (once per process).

    ``CONVOSO_LOG=debug`` shows every request, ``info`` retries and the audit
    trail. Unset, the loggers are left to the application's own configuration.
    """
    global _configured
    if _configured:
        return
    _configured = True
    level = _LEVELS.get(os.environ.get(ENV_LOG, "").strip().lower())
    if level is None:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
