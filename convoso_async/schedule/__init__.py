"""Declarative campaign schedules: which campaigns should be active, when."""

from .model import Schedule, ScheduleError, Window

__all__ = ["Schedule", "ScheduleError", "Window"]
