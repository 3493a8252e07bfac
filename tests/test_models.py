"""Structuring Convoso's payloads into models."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from reference_answers import REFERENCE_SEARCH_ANSWER

from convoso_async import Campaign, CampaignStatus, LastCallDate, ResponseDecodeError
from convoso_async._models import structure


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
    last = campaign.last_call_date
    assert last is not None
    assert type(last.date) is dt.date
    assert last.date == dt.date(2026, 3, 3)
    assert last.time == dt.time(14, 5, 9, 250000)
    moment = last.to_datetime()
    assert moment == dt.datetime(2026, 3, 3, 14, 5, 9, 250000, tzinfo=ZoneInfo("America/Denver"))
    assert moment.utcoffset() == dt.timedelta(hours=-7)


def test_campaigns_sort_by_last_call_date_whichever_form_convoso_sent() -> None:
    def with_date(campaign_id: str, date: str) -> dict[str, Any]:
        zone = {"timezone_type": 3, "timezone": "America/Denver"}
        return {
            "id": campaign_id,
            "name": "A",
            "status": "Y",
            "last_call_date": {"date": date, **zone},
        }

    result = campaigns(
        [
            with_date("1", "2026-03-03 14:05:09.000000"),
            with_date("2", "2026-03-01"),
            with_date("3", "2026-03-02 08:00:00.000000"),
        ]
    )
    days = [c.last_call_date.date for c in result if c.last_call_date is not None]
    assert all(type(day) is dt.date for day in days)
    ordered = sorted(
        result, key=lambda c: c.last_call_date.date if c.last_call_date else dt.date.min
    )
    assert [c.id for c in ordered] == ["2", "3", "1"]
    assert days[0] == dt.date(2026, 3, 3)  # a datetime would compare unequal to its date


def test_a_datetime_is_refused_as_the_day() -> None:
    with pytest.raises(TypeError, match="pass the time of day as time="):
        LastCallDate(dt.datetime(2026, 3, 3, 14, 5), 3, "America/Denver")


def test_str_of_a_last_call_date_is_readable() -> None:
    assert (
        str(LastCallDate(dt.date(2026, 3, 3), 3, "America/Denver")) == "2026-03-03 America/Denver"
    )
    assert (
        str(LastCallDate(dt.date(2026, 3, 3), 1, "+02:00", dt.time(14, 5, 9)))
        == "2026-03-03 14:05:09 +02:00"
    )


def test_to_dict_is_json_ready_and_uses_one_status_vocabulary() -> None:
    (sales, service, _) = campaigns(json.loads(REFERENCE_SEARCH_ANSWER)["data"])
    assert sales.to_dict() == {
        "id": "111",
        "name": "Sales Campaign",
        "status": "active",
        "active": True,
        "last_call_date": {
            "date": "2026-03-03",
            "time": None,
            "timezone": "America/Denver",
            "timezone_type": 3,
        },
    }
    assert service.to_dict()["status"] == "inactive"
    assert CampaignStatus.INACTIVE.label == "inactive"
    timed = LastCallDate(dt.date(2026, 3, 3), 3, "America/Denver", dt.time(14, 5, 9, 250000))
    assert timed.to_dict()["time"] == "14:05:09.250000"
    no_call = Campaign("9", "Ñandú", CampaignStatus.INACTIVE)
    for model in (sales, service, no_call):
        # Plain JSON types only: no default= needed, and a round trip changes nothing.
        assert json.loads(json.dumps(model.to_dict())) == model.to_dict()


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
