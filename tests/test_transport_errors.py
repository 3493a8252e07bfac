"""The one table of transport errors: each family's exceptions are told apart by type.

A class is judged by what it is (``isinstance`` against the family's own classes), not
by what it is called: a subclass under another name means what its base means, and a
stranger's class that happens to share a name means nothing.
"""

from __future__ import annotations

from typing import Any

import httpx
import httpx2
import pytest
from raised_errors import raised

from convoso_async._http.transport_errors import is_send_error, send_error


@pytest.mark.parametrize("family", [httpx2, httpx], ids=["httpx2", "httpx"])
def test_a_renamed_subclass_means_what_its_base_means(family: Any) -> None:
    refused = type("RefusedByProxy", (family.ConnectError,), {})
    slow = type("SlowAnswer", (family.ReadTimeout,), {})
    garbled = type("Garbled", (family.DecodingError,), {})
    assert send_error(raised(refused("no"))).never_connected is True
    assert send_error(raised(slow("late"))).kind == "timeout"
    assert send_error(raised(garbled("bad gzip"))).kind == "decode"


@pytest.mark.parametrize("family", [httpx2, httpx], ids=["httpx2", "httpx"])
def test_a_read_error_named_like_a_connect_error_is_still_a_read_error(family: Any) -> None:
    misnamed = type("ConnectError", (family.ReadError,), {})
    also = type("TimeoutException", (family.ReadError,), {})
    error = send_error(raised(misnamed("cut short")))
    assert (error.kind, error.never_connected) == ("connection", False)
    assert send_error(raised(also("cut short"))).kind == "connection"


def test_a_stranger_s_class_with_a_family_s_name_is_not_the_family_s() -> None:
    class ConnectError(Exception):  # not httpx's, whatever its name
        pass

    assert not is_send_error(ConnectError("x"))
    stranger = httpx2.ReadError("cut short")
    error = send_error(raised(stranger, ConnectError("below")))
    assert (error.kind, error.never_connected) == ("connection", False)
