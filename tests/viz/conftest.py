"""Fixtures of the page tests (tests/viz/headless.py): ``browser``, a headless Chromium."""

from headless import browser  # noqa: F401  (a fixture: pytest finds it here)
