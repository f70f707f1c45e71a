"""Where the test inputs live: inside the repository, so that a fresh clone alone runs
every test and every bench (nothing is read from a sibling folder)."""

from __future__ import annotations

from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
FIXTURES = REPOSITORY / "tests" / "fixtures"
# Real third-party inputs, copied with their provenance (tests/fixtures/samples/PROVENANCE.md).
SAMPLES = FIXTURES / "samples"
SMART_DATA_MODELS = FIXTURES / "sdm"
