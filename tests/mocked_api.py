"""The API the ``api`` and ``convoso`` fixtures mock: its root, and the token the client sends.

Tests that build their own client on a mock transport use the same two, so that what they
check (the path under the root, the token in the form, the token in no message) matches.
"""

BASE_URL = "https://api.test.invalid/v1"
TOKEN = "tok-SECRET-5f1e2d3c4b"
