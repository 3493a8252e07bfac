"""How the property tests run: reproducibly by default, exploring on request.

Two Hypothesis profiles, chosen by ``CONVOSO_HYPOTHESIS_PROFILE``:

- ``ci`` (the default, so ``pytest``, ``nox -s tests`` and CI all use it):
  derandomized, each test draws the same examples on every run and machine
  (for one Hypothesis version), and no example database is read or written,
  so a run never depends on what an earlier run found.
- ``explore`` (``nox -s fuzz``): a random seed each run, ``CONVOSO_FUZZ_SCALE``
  times the examples (default 10), and failures kept in ``.hypothesis/`` so
  the next run replays them first. A failure prints the seed
  (``--hypothesis-seed=N`` replays the run) and a ``@reproduce_failure`` line.

Tests ask for their example counts through `examples`, so the scale applies.
"""

from __future__ import annotations

import os

from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

PROFILE_VARIABLE = "CONVOSO_HYPOTHESIS_PROFILE"
SCALE_VARIABLE = "CONVOSO_FUZZ_SCALE"

# No per-example deadline in either profile: many examples here run an event loop or a server
# on loopback, and on a loaded machine (parallel workers, a busy core) one can take seconds for
# reasons that are not the code's; Hypothesis then reports a timing "Flaky" that says nothing
# about the property. A hang still fails: pytest-timeout bounds every test.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True, deadline=None)
settings.register_profile(
    "explore",
    derandomize=False,
    database=DirectoryBasedExampleDatabase(".hypothesis/examples"),
    print_blob=True,
    deadline=None,
)
PROFILE = os.environ.get(PROFILE_VARIABLE, "ci")
settings.load_profile(PROFILE)


def examples(count: int) -> int:
    """``count`` examples, times the exploring scale when exploring."""
    if PROFILE != "explore":
        return count
    return count * int(os.environ.get(SCALE_VARIABLE, "10"))
