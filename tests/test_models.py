"""Structuring Convoso's payloads into models."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import REFERENCE_SEARCH_ANSWER

from convoso_async import Campaign, CampaignStatus, LastCallDate, ResponseDecodeError
from convoso_async.models import structure


def campaigns(data: Any) -> list[Campaign]:
    return structure(data, list[Campaign], path="data")


def test_reference_example_structures_exactly() -> None:
    result = campaigns(json.loads(REFERENCE_SEARCH_ANSWER)["data"])
    denver = LastCallDate(dt.date(2026, 3, 3), 3, "America/Denver")
    assert result == [
        Campaign("111", "Sales Campaign", CampaignStatus.ACTIVE, denver),
        Campaign(
            "222",
            "Customer Service",
            CampaignStatus.INACTIVE,
            LastCallDate(dt.date(2026, 3, 2), 3, "America/Denver"),
        ),
        Campaign("333", "Retention Campaign", CampaignStatus.ACTIVE, denver),
    ]
    assert [c.is_active for c in result] == [True, False, True]
    assert [c.status.value for c in result] == ["Y", "N", "Y"]
    assert str(CampaignStatus.INACTIVE) == "N"


def test_php_datetime_keeps_the_time_and_gives_an_aware_datetime() -> None:
    (campaign,) = campaigns(
        [
            {
                "id": "1",
                "name": "A",
                "status": "Y",
                "last_call_date": {
                    "date": "2026-03-03 14:05:09.250000",
                    "timezone_type": 3,
                    "timezone": "America/Denver",
                },
            }
        ]
    )
    assert campaign.last_call_date is not None
    moment = campaign.last_call_date.to_datetime()
    assert moment == dt.datetime(2026, 3, 3, 14, 5, 9, 250000, tzinfo=ZoneInfo("America/Denver"))
    assert moment.utcoffset() == dt.timedelta(hours=-7)


def test_plain_date_gives_midnight_in_its_zone_and_offsets_work() -> None:
    assert LastCallDate(dt.date(2026, 7, 1), 3, "America/Denver").to_datetime().utcoffset() == (
        dt.timedelta(hours=-6)
    )
    assert LastCallDate(dt.date(2026, 7, 1), 1, "+05:30").to_datetime().utcoffset() == (
        dt.timedelta(hours=5, minutes=30)
    )
    with pytest.raises(ValueError, match="unknown time zone"):
        LastCallDate(dt.date(2026, 7, 1), 2, "Mars/Olympus").to_datetime()


@pytest.mark.parametrize(
    "last_call",
    [None, {"date": None}, {"date": "0000-00-00", "timezone_type": 3, "timezone": "UTC"}, "absent"],
)
def test_null_absent_or_zero_date_is_none(last_call: Any) -> None:
    item: dict[str, Any] = {"id": "1", "name": "A", "status": "N"}
    if last_call != "absent":
        item["last_call_date"] = last_call
    assert campaigns([item])[0].last_call_date is None


def test_unknown_fields_are_ignored_and_numeric_ids_become_strings() -> None:
    (campaign,) = campaigns(
        [
            {
                "id": 42,
                "name": "A",
                "status": "Y",
                "dialer": "x",
                "last_call_date": None,
                "extra": {"nested": [1]},
            }
        ]
    )
    assert campaign.id == "42"


@pytest.mark.parametrize(
    ("data", "path", "problem"),
    [
        ([{"id": "1", "name": "A", "status": "Q"}], "data[0].status", "expected campaign status"),
        ([{"id": True, "name": "A", "status": "Y"}], "data[0].id", "expected a non-empty id"),
        ([{"id": "", "name": "A", "status": "Y"}], "data[0].id", "expected a non-empty id"),
        ([{"id": "1", "name": 5, "status": "Y"}], "data[0].name", "expected a string"),
        ([{"id": "1", "status": "Y"}], "data[0].name", "required"),
        (
            [{"id": "1", "name": "A", "status": "Y", "last_call_date": "2026-03-03"}],
            "data[0].last_call_date",
            "expected an object or null",
        ),
        (
            [
                {
                    "id": "1",
                    "name": "A",
                    "status": "Y",
                    "last_call_date": {"date": "03/03/2026", "timezone_type": 3, "timezone": "UTC"},
                }
            ],
            "data[0].last_call_date.date",
            "YYYY-MM-DD",
        ),
        (["not an object"], "data[0]", "expected a campaign object"),
    ],
)
def test_bad_shapes_raise_decode_error_naming_the_path(data: Any, path: str, problem: str) -> None:
    with pytest.raises(ResponseDecodeError) as caught:
        campaigns(data)
    assert caught.value.path == path
    assert problem in str(caught.value)


def test_models_are_frozen() -> None:
    campaign = Campaign("1", "A", CampaignStatus.ACTIVE)
    with pytest.raises(AttributeError):
        campaign.name = "B"  # type: ignore[misc]
