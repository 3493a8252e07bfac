"""The help texts say what the code does: the defaults it uses, the exit codes it returns."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

import pytest

from convoso_async import _defaults
from convoso_async.cli import _exits, _main
from convoso_async.cli._main import build_parser, main
from convoso_async.testing import __main__ as fake_main
from convoso_async.testing._state import DEFAULT_CAMPAIGNS

#: A default shown in a help text: "(default 30)", "(default: 0)", "(default: 127.0.0.1)".
DEFAULT_SHOWN = re.compile(r"\(default:? ([0-9][0-9.]*)\)")


def _actions(
    parser: argparse.ArgumentParser,
) -> Iterator[tuple[argparse.ArgumentParser, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _actions(child)
        else:
            yield parser, action


def _shown_defaults(parser: argparse.ArgumentParser) -> dict[tuple[str, str], str]:
    """Each option whose help shows a number as its default: (command, dest) -> that number."""
    shown = {}
    for command, action in _actions(parser):
        match = DEFAULT_SHOWN.search(action.help or "")
        if match:
            shown[command.prog, action.dest] = match.group(1)
    return shown


def _exit_codes() -> set[int]:
    return {
        value
        for name, value in vars(_exits).items()
        if name.startswith("EXIT_") and isinstance(value, int)
    }


def test_the_defaults_convoso_help_shows_are_the_library_defaults() -> None:
    connection = {
        "timeout": _defaults.DEFAULT_TIMEOUT,
        "max_retries": _defaults.DEFAULT_MAX_RETRIES,
    }
    expected: dict[tuple[str, str], float] = {
        ("convoso demo", "campaigns"): _defaults.DEMO_CAMPAIGNS,
        ("convoso demo", "latency"): _defaults.DEMO_LATENCY,
        ("convoso demo", "concurrency"): _defaults.DEMO_CONCURRENCY,
        ("convoso", "timeout"): _defaults.DEFAULT_TIMEOUT,
        ("convoso", "max_retries"): _defaults.DEFAULT_MAX_RETRIES,
    }
    for command in ("campaigns list", "campaigns activate", "campaigns deactivate"):
        expected.update({(f"convoso {command}", dest): value for dest, value in connection.items()})
    for command in ("campaigns activate", "campaigns deactivate", "schedule apply", "schedule run"):
        expected[f"convoso {command}", "concurrency"] = _defaults.DEFAULT_MAX_CONCURRENCY
    for command in ("schedule apply", "schedule run", "api"):
        expected.update({(f"convoso {command}", dest): value for dest, value in connection.items()})

    shown = _shown_defaults(build_parser())

    assert {key: float(number) for key, number in shown.items()} == {
        key: float(value) for key, value in expected.items()
    }


def test_every_default_a_help_shows_is_the_one_the_parser_uses() -> None:
    fake = fake_main.build_arg_parser()
    for parser in (build_parser(), fake):
        used = {(command.prog, action.dest): action.default for command, action in _actions(parser)}
        for key, number in _shown_defaults(parser).items():
            default = used[key]
            if isinstance(default, str) and default == argparse.SUPPRESS:
                continue  # a command's copy of a connection option: the top level's applies
            if key == (fake.prog, "campaigns"):
                default = DEFAULT_CAMPAIGNS  # not given on the command line: the fake's own
            assert number == (f"{default:g}" if isinstance(default, float) else str(default)), key


def test_the_fake_servers_help_shows_a_default_for_each_option_that_has_one() -> None:
    shown = {dest for _, dest in _shown_defaults(fake_main.build_arg_parser())}
    assert shown == {"host", "port", "campaigns", "latency", "retry_after", "seed"}


def test_the_demo_help_prints_the_demo_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # unwrapped
    assert f"(default {_defaults.DEMO_CAMPAIGNS})" in text
    assert f"(default {_defaults.DEMO_LATENCY:g})" in text
    assert f"(default {_defaults.DEMO_CONCURRENCY})" in text


def test_the_epilog_lists_every_exit_code_the_command_line_uses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    listed = text.split("Exit codes: ", 1)[1].split(". Output is", 1)[0]
    codes = [int(code) for code in re.findall(r"(?:^|; )(\d+) ", listed)]

    assert sorted(codes) == sorted(_exit_codes())
    assert {130, 143} <= set(codes)  # Ctrl-C and SIGTERM


def test_the_module_docstring_names_the_same_exit_codes() -> None:
    assert _main.__doc__ is not None
    paragraph = _main.__doc__.split("Exit codes:", 1)[1].split("\n\n", 1)[0]
    assert {int(number) for number in re.findall(r"\b\d+\b", paragraph)} == _exit_codes()
