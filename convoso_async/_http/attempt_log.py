"""What the log says of each attempt (at DEBUG) and of each retry (at INFO).

Every line carries its fields as ``extra`` too (``method``, ``path``,
``campaign_id``...), for structured logging; none carries the request body.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from convoso_async import _telemetry as telemetry
from convoso_async._log import logger

__all__ = ["log_attempt", "retry_log"]


def log_attempt(
    path: str,
    campaign_id: str | None,
    number: int,
    started: float,
    *,
    status: int | None = None,
    error: BaseException | None = None,
) -> None:
    """Log (at DEBUG) how attempt ``number`` (begun at ``started``) ended: a status or an error."""
    if not logger.isEnabledFor(logging.DEBUG):
        return
    elapsed = time.perf_counter() - started
    about = _about(campaign_id)
    fields: dict[str, Any] = {"method": "POST", "path": path, "campaign_id": campaign_id}
    if error is None:
        fields.update(status_code=status, elapsed=elapsed, attempt=number)
        logger.debug(
            "POST %s%s -> %d in %.1fms (attempt %d)",
            *(path, about, status, elapsed * 1000, number),
            extra=fields,
        )
        return
    name = type(error).__name__
    fields.update(elapsed=elapsed, attempt=number, error=name)
    logger.debug(
        "POST %s%s failed after %.1fms (attempt %d): %s",
        *(path, about, elapsed * 1000, number, name),
        extra=fields,
    )


def retry_log(
    path: str, campaign_id: str | None, max_retries: int
) -> Callable[[BaseException, int, float], None]:
    """What a retry of a call to ``path`` tells telemetry and the log before its wait."""

    def on_retry(error: BaseException, retry_number: int, delay: float) -> None:
        observed = telemetry.active()
        if observed is not None:
            observed.retrying(error, retry_number, delay)
        logger.info(
            "retrying POST %s%s in %.2fs after %s (retry %d of %d)",
            path,
            _about(campaign_id),
            delay,
            type(error).__name__,
            retry_number,
            max_retries,
            extra={
                "method": "POST",
                "path": path,
                "campaign_id": campaign_id,
                "delay": delay,
                "error": type(error).__name__,
                "retry": retry_number,
                "max_retries": max_retries,
            },
        )

    return on_retry


def _about(campaign_id: str | None) -> str:
    return "" if campaign_id is None else f" campaign={campaign_id}"
