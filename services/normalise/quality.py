"""Bits of ``Observation.quality`` (one int per value; 0 = good).

Bits 0-3 belong to time parsing (:mod:`services.runtime.timeparse`); every bit
is listed with its meaning in ``deploy/vocabulary.yaml`` (checked at load).
"""

from __future__ import annotations

from services.runtime.timeparse import (
    CLOCK_DEGRADED,
    TIME_AMBIGUOUS,
    TIME_INVALID,
    TIME_NONEXISTENT,
)

TIME_FROM_RECEPTION = 1 << 4
COUNTER_RESET = 1 << 5
COUNTER_ROLLOVER = 1 << 6
OUT_OF_RANGE = 1 << 7
STEP_INFERRED = 1 << 8
REGISTER_RESTARTED = 1 << 9

FLAGS = {
    "time-invalid": TIME_INVALID,
    "time-nonexistent": TIME_NONEXISTENT,
    "time-ambiguous": TIME_AMBIGUOUS,
    "clock-degraded": CLOCK_DEGRADED,
    "time-from-reception": TIME_FROM_RECEPTION,
    "counter-reset": COUNTER_RESET,
    "counter-rollover": COUNTER_ROLLOVER,
    "out-of-range": OUT_OF_RANGE,
    "step-inferred": STEP_INFERRED,
    "register-restarted": REGISTER_RESTARTED,
}
if len(set(FLAGS.values())) != len(FLAGS) or any(v & (v - 1) for v in FLAGS.values()):
    raise AssertionError("every quality flag must be its own single bit")
BITS = {name: value.bit_length() - 1 for name, value in FLAGS.items()}


def names(flags: int) -> list[str]:
    """The flag names set in ``flags`` (for logs and tests)."""
    return [name for name, value in FLAGS.items() if flags & value]
