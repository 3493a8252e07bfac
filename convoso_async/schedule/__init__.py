"""Declarative campaign schedules: which campaigns should be active, when.

A schedule is a TOML file of weekly windows, each naming campaigns to keep
active on some days between two wall-clock times in a time zone::

    schedule = Schedule.load("shifts.toml")
    wanted = schedule.desired_states(datetime.now(timezone.utc))  # {"111": True, ...}

Two modules, the lower first: `._model` (`Window`, and what a set of windows
wants at an instant, across daylight saving changes) and `._reader` (the TOML
file format, with the line of every problem, and `Schedule` = the model plus
``load`` and ``from_toml``). The model never imports the reader.
"""

from ._model import Window
from ._reader import Schedule, ScheduleError

__all__ = ["Schedule", "ScheduleError", "Window"]
