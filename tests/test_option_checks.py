"""Every option of every public callable is checked the same way: a wrong one is a
`ConfigurationError` naming the option, raised before anything is sent.

The walk reads the signatures, so a new option that is not checked fails here. What a call
acts on (campaign ids, ``active``, a mapping of targets) is data, not an option: it is refused
with ``TypeError``/``ValueError`` as the design says, and pinned in test_fuzz.py.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import anyio
import attrs
import pytest

from convoso_async import (
    AdaptiveLimiter,
    AsyncConvoso,
    CircuitBreaker,
    ConfigurationError,
    Convoso,
    Limiter,
    RetryBudget,
)
from convoso_async._options import Options
from convoso_async.redis_limiter import RedisRateLimiter

TOKEN = "tok-OPTIONS-0a1b2c3d"
BASE_URL = "http://127.0.0.1:9/v1"  # nothing listens: a call that got past its checks fails

#: Parameters that name what a call acts on, not how.
DATA = {"self", "campaign_ids", "active", "targets"}
#: Options whose every value is valid (a string key checked elsewhere, the Redis target).
#: Parameters with a wrong-but-plausible value of their own, where `object()` is not enough.
SPECIAL: dict[str, list[object]] = {
    "auth_token": [12345, "tok\x00en"],
    "base_url": [12345, "ftp://x", "https://api.convoso.com/v1?x=1"],
    "http_client": [object(), "httpx2"],
    "transport": ["curl", None],
    "rate_limit": ["fast", -1, 10**400],
    "retry_budget": [10, "yes"],
    "circuit_breaker": [10, "yes"],
    "redis": [12345],
    "key": ["", 5],
    "fallback": [10],
    "rate": [0, "5", 10**400],
    "adaptive": ["yes"],
}
#: A wrong value for every other option: the wrong type, then out of any range.
GENERIC: list[object] = [object(), "5", 10**400, -1]


def wrong_values(name: str) -> list[object]:
    return SPECIAL.get(name, GENERIC)


def options_of(function: Callable[..., Any]) -> list[str]:
    return [
        name
        for name, parameter in inspect.signature(function).parameters.items()
        if name not in DATA and parameter.kind is not inspect.Parameter.VAR_KEYWORD
    ]


def client() -> AsyncConvoso:
    return AsyncConvoso(TOKEN, base_url=BASE_URL, max_retries=0)


def sync_client() -> Convoso:
    return Convoso(TOKEN, base_url=BASE_URL, max_retries=0)


CONSTRUCTORS: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
    "AsyncConvoso": (AsyncConvoso, {"auth_token": TOKEN, "base_url": BASE_URL}),
    "AsyncConvoso.with_options": (lambda **kw: client().with_options(**kw), {}),
    "Convoso": (Convoso, {"auth_token": TOKEN, "base_url": BASE_URL}),
    "Convoso.with_options": (lambda **kw: sync_client().with_options(**kw), {}),
    "Limiter": (Limiter, {"rate": 5}),
    "AdaptiveLimiter": (AdaptiveLimiter, {}),
    "RetryBudget": (RetryBudget, {}),
    "CircuitBreaker": (CircuitBreaker, {}),
    "RedisRateLimiter": (RedisRateLimiter, {"redis": "redis://127.0.0.1:9/0", "rate": 5}),
}
SIGNATURES: dict[str, Callable[..., Any]] = {
    "AsyncConvoso": AsyncConvoso.__init__,
    "AsyncConvoso.with_options": AsyncConvoso.with_options,
    "Convoso": Convoso.__init__,
    "Convoso.with_options": Convoso.with_options,
    "Limiter": Limiter.__init__,
    "AdaptiveLimiter": AdaptiveLimiter.__init__,
    "RetryBudget": RetryBudget.__init__,
    "CircuitBreaker": CircuitBreaker.__init__,
    "RedisRateLimiter": RedisRateLimiter.__init__,
}
CASES = [
    (owner, option, value)
    for owner, function in SIGNATURES.items()
    for option in options_of(function)
    for value in wrong_values(option)
]


def case_id(case: tuple[str, str, object]) -> str:
    owner, option, value = case
    text = repr(value) if len(repr(value)) < 20 else f"<{type(value).__name__}, huge>"
    return f"{owner}-{option}-{text}"


@pytest.mark.parametrize(("owner", "option", "value"), CASES, ids=map(case_id, CASES))
def test_a_wrong_option_of_a_constructor_is_a_configuration_error_naming_it(
    owner: str, option: str, value: object
) -> None:
    make, required = CONSTRUCTORS[owner]
    with pytest.raises(ConfigurationError) as caught:
        make(**{**required, option: value})
    message = str(caught.value)
    # The option, or (for an http_client of the wrong kind, an auth token that cannot be
    # sent, a rate given as rate_limit) the words that name it.
    assert option in message or option.replace("_", " ") in message, message
    assert "10000000000" not in message, "a huge number is not spelled out"


BULK_CALLS: dict[str, Callable[..., Any]] = {
    "set_status_many": lambda c, **kw: c.campaigns.set_status_many(["1"], True, **kw),
    "apply_statuses": lambda c, **kw: c.campaigns.apply_statuses({"1": True}, **kw),
    "iter_set_status": lambda c, **kw: anext_of(c.campaigns.iter_set_status(["1"], True, **kw)),
}
BULK_SIGNATURES: dict[str, Callable[..., Any]] = {
    "set_status_many": AsyncConvoso(TOKEN).campaigns.set_status_many,
    "apply_statuses": AsyncConvoso(TOKEN).campaigns.apply_statuses,
    "iter_set_status": AsyncConvoso(TOKEN).campaigns.iter_set_status,
}
BULK_CASES = [
    (call, option, value)
    for call, function in BULK_SIGNATURES.items()
    for option in options_of(function)
    for value in wrong_values(option)
]


async def anext_of(stream: Any) -> object:
    async for outcome in stream:
        return outcome
    return None


@pytest.mark.parametrize(("call", "option", "value"), BULK_CASES, ids=map(case_id, BULK_CASES))
def test_a_wrong_option_of_a_bulk_call_is_refused_before_anything_is_sent(
    call: str, option: str, value: object
) -> None:
    async def attempt() -> None:
        async with client() as convoso:
            with pytest.raises(ConfigurationError, match=option):
                await BULK_CALLS[call](convoso, **{option: value})

    anyio.run(attempt)


SYNC_BULK_CALLS: dict[str, Callable[..., Any]] = {
    "set_status_many": lambda c, **kw: c.campaigns.set_status_many(["1"], True, **kw),
    "apply_statuses": lambda c, **kw: c.campaigns.apply_statuses({"1": True}, **kw),
    "iter_set_status": lambda c, **kw: next(iter(c.campaigns.iter_set_status(["1"], True, **kw))),
}


@pytest.mark.parametrize(("call", "option", "value"), BULK_CASES, ids=map(case_id, BULK_CASES))
def test_a_wrong_option_of_a_sync_bulk_call_is_refused_the_same_way(
    call: str, option: str, value: object
) -> None:
    with sync_client() as convoso, pytest.raises(ConfigurationError, match=option):
        SYNC_BULK_CALLS[call](convoso, **{option: value})


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_a_wrong_idempotent_of_post_is_refused_on_both_clients(value: object) -> None:
    async def attempt() -> None:
        async with client() as convoso:
            await convoso.post("/leads/search", idempotent=value)  # type: ignore[arg-type]

    with pytest.raises(ConfigurationError, match="idempotent"):
        anyio.run(attempt)
    with sync_client() as convoso, pytest.raises(ConfigurationError, match="idempotent"):
        convoso.post("/leads/search", idempotent=value)  # type: ignore[arg-type]


def test_the_walk_covers_every_option_of_the_bulk_calls() -> None:
    # A guard on the walk itself: it sees the options the README documents.
    assert set(options_of(BULK_SIGNATURES["set_status_many"])) == {
        "max_concurrency",
        "on_progress",
        "skip_unchanged",
        "dry_run",
        "deadline",
        "on_interrupt",
    }
    assert {option for _, option, _ in CASES} >= {
        "timeout",
        "max_retries",
        "max_concurrency",
        "rate_limit",
        "retry_budget",
        "circuit_breaker",
        "max_response_bytes",
        "transport",
        "http_client",
    }


# -- one options object ------------------------------------------------------------------------

#: Constructor options that make the connection pool, which copies share and cannot change.
POOL_OPTIONS = {"auth_token", "base_url", "http_client", "transport"}


def option_fields() -> dict[str, str]:
    """Each option of `Options` by its keyword: the property that reads it back."""
    return {field.alias or field.name: field.name for field in attrs.fields(Options) if field.init}


def given_values() -> dict[str, Any]:
    """For each option of `Options`, a valid value other than its default."""
    return {
        "timeout": 7.5,
        "max_retries": 5,
        "max_concurrency": 3,
        "max_response_bytes": 1024,
        "rate_limit": Limiter(7),
        "retry_budget": RetryBudget(tokens=9),
        "circuit_breaker": CircuitBreaker(failure_threshold=3),
    }


def keywords(function: Callable[..., Any]) -> list[str]:
    return [name for name in inspect.signature(function).parameters if name != "self"]


def test_the_constructors_and_with_options_take_exactly_the_options_of_the_one_object() -> None:
    options = set(option_fields())
    assert keywords(Convoso.__init__) == keywords(AsyncConvoso.__init__)
    assert set(keywords(AsyncConvoso.__init__)) == options | POOL_OPTIONS
    assert set(keywords(AsyncConvoso.with_options)) == options
    assert keywords(Convoso.with_options) == keywords(AsyncConvoso.with_options)
    assert set(given_values()) == options, "a new option needs a value in given_values()"


@pytest.mark.parametrize("option", sorted(option_fields()))
def test_every_option_is_taken_by_every_door_and_read_back_through_its_property(
    option: str,
) -> None:
    value = given_values()[option]
    shown = option_fields()[option]
    expected = value if isinstance(value, (int, float)) else None
    with Convoso(TOKEN, base_url=BASE_URL, **{option: value}) as sync_made:
        made = [
            AsyncConvoso(TOKEN, base_url=BASE_URL, **{option: value}),
            client().with_options(**{option: value}),
            sync_made,
            sync_client().with_options(**{option: value}),
        ]
        for made_client in made:
            read = getattr(made_client, shown)
            if expected is None:
                assert read is value, (type(made_client).__name__, option)
            else:
                assert read == expected, (type(made_client).__name__, option)
    # One property, written once and documented, serves both clients.
    assert inspect.getattr_static(Convoso, shown) is inspect.getattr_static(AsyncConvoso, shown)
    assert inspect.getattr_static(AsyncConvoso, shown).__doc__


#: Every way in for an option, and the object that checks them all.
def door(make: Callable[..., Any], required: dict[str, Any]) -> Callable[..., Any]:
    return lambda **given: make(**required, **given)


DOORS: dict[str, Callable[..., Any]] = {
    "Options": Options,
    **{
        name: door(*CONSTRUCTORS[name])
        for name in ("AsyncConvoso", "AsyncConvoso.with_options", "Convoso", "Convoso.with_options")
    },
}
OPTION_CASES = [(option, bad) for option in sorted(option_fields()) for bad in wrong_values(option)]


def refusal(make: Callable[..., Any], given: dict[str, object]) -> str:
    with pytest.raises(ConfigurationError) as caught:
        make(**given)
    return str(caught.value)


@pytest.mark.parametrize(
    ("option", "bad"), OPTION_CASES, ids=[case_id(("", o, b)) for o, b in OPTION_CASES]
)
def test_a_bad_option_is_refused_with_the_same_message_by_every_door(
    option: str, bad: object
) -> None:
    messages = {door: refusal(make, {option: bad}) for door, make in DOORS.items()}
    assert len(set(messages.values())) == 1, messages


def test_a_copy_shares_what_it_is_not_given_and_sizes_a_new_default_breaker_by_itself() -> None:
    original = AsyncConvoso(TOKEN, base_url=BASE_URL, rate_limit=5, max_concurrency=20)
    wider = original.with_options(max_concurrency=40)
    assert wider.circuit_breaker is original.circuit_breaker  # shared, not remade
    assert wider.retry_budget is original.retry_budget
    assert wider.rate_limiter is original.rate_limiter
    assert original.circuit_breaker is not None
    assert original.circuit_breaker.failure_threshold == 40
    renewed = original.with_options(max_concurrency=40, circuit_breaker=True)
    assert renewed.circuit_breaker is not original.circuit_breaker
    assert renewed.circuit_breaker is not None
    assert renewed.circuit_breaker.failure_threshold == 80
    assert renewed._options is not original._options
    assert (original.max_concurrency, renewed.max_concurrency) == (20, 40)
