"""Observations of one single-reading batch, column-wise, and the ObservationBatch
messages that carry them (avro/ObservationBatch.avsc, derived from Observation by
``services/runtime/batches.py``).

The fast path gives one observation per (member, measure), each of one value;
here they stay numpy columns until a batch message is written, so no Observation
dict is built per reading. The batch written is the one the runtime's ``implode``
writes for the same observations (a unit test explodes both): shared fields once,
repeated strings as indexes into ``dictionary``, a value, and a time only where
the per-record path gives one (instant metrics).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from services.runtime.batches import spec_for_member

# Observation fields written as dictionary indexes: the runtime's ObservationBatch spec.
_OBSERVATION_BATCH = spec_for_member("Observation")
assert _OBSERVATION_BATCH is not None
WORD_FIELDS = _OBSERVATION_BATCH.dictionary


@dataclass(frozen=True)
class Words:
    """A string field per row: row ``i`` holds ``values[codes[i]]`` (None allowed)."""

    codes: np.ndarray
    values: list[str | None]

    @classmethod
    def constant(cls, value: str | None, rows: int) -> Words:
        return cls(np.zeros(rows, dtype=np.int64), [value])


@dataclass(frozen=True)
class ObservationRows:
    """One single-value observation per row, in the per-record path's order."""

    shared: dict[str, Any]  # city, source, dataset, lineage_id
    pseudonyms: np.ndarray  # object array of str
    positions: np.ndarray  # object array of GeoPoint dicts or None (the entity's)
    words: dict[str, Words]  # every field of WORD_FIELDS
    start: np.ndarray  # int64 µs
    step_seconds: np.ndarray  # int64 (0: the observation carries its time)
    values: np.ndarray  # float64
    quality: np.ndarray  # int64 (0: good, written as no quality at all)

    def __len__(self) -> int:
        return len(self.values)

    def without(self, rows: np.ndarray) -> ObservationRows:
        """These observations but ``rows`` (positions), in order."""
        keep = np.ones(len(self), dtype=bool)
        keep[rows] = False
        return replace(
            self,
            pseudonyms=self.pseudonyms[keep],
            positions=self.positions[keep],
            words={name: Words(w.codes[keep], w.values) for name, w in self.words.items()},
            start=self.start[keep],
            step_seconds=self.step_seconds[keep],
            values=self.values[keep],
            quality=self.quality[keep],
        )

    def batch(self, rows: np.ndarray) -> dict[str, Any]:
        """The ObservationBatch of ``rows`` (positions, in order)."""
        steps = self.step_seconds[rows]
        timed = steps == 0
        quality = self.quality[rows]
        flagged = quality != 0
        out: dict[str, Any] = dict(self.shared)
        out["entity_pseudonym"] = self.pseudonyms[rows].tolist()
        out["position"] = self.positions[rows].tolist()
        out["start"] = self.start[rows].tolist()
        out["step_seconds"] = steps.tolist()
        out["times"] = self.start[rows][timed].tolist()
        out["times_counts"] = timed.astype(np.int64).tolist()
        out["values"] = self.values[rows].tolist()
        out["values_counts"] = [1] * len(rows)
        out["quality"] = quality[flagged].tolist()
        out["quality_counts"] = flagged.astype(np.int64).tolist()
        for name in ("versions", "replaced"):
            out[name] = []
            out[name + "_counts"] = [0] * len(rows)
        out.update(self._dictionary(rows))
        return out

    def _dictionary(self, rows: np.ndarray) -> dict[str, Any]:
        """Every word field as indexes into one ``dictionary`` (-1: null)."""
        dictionary: dict[str, int] = {}
        out: dict[str, Any] = {}
        for name in WORD_FIELDS:
            words = self.words[name]
            index = np.asarray(
                [
                    -1 if w is None else dictionary.setdefault(w, len(dictionary))
                    for w in words.values
                ],
                dtype=np.int64,
            )
            out[name] = index[words.codes[rows]].tolist()
        out["dictionary"] = list(dictionary)
        return out
