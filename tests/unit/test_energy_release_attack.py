"""The adversary of energy aggregates: everything ever released, and what it gives away.

A city of a few zones x sectors (1 to 30 delivery points per cell, some cells under
10, one dominated by a single point) sends one day of 15-minute readings in a random
order, in random batches, with late data (after the next day began, within the
lateness), corrections (a reading re-sent with another value) and late meters. The
real EnergyStage aggregates it (fed record by record as the StageRunner would, no
broker: the stage's logic is pure), and the real publish Republisher decides what
reaches the public and the partners. The attacker keeps EVERY record that reached
them (every version, as partners pooling what they received would) and knows more
than any real one: which delivery point belongs to which cell, which reading was
sent when, and the value of every published record. Unknowns are the energies of
every (delivery point, quarter, revision of the reading); each released record is a
linear equation over them. The attacker then tries, for every suppressed cell and
window, every cell under the threshold and every single delivery point's energy in
every window:

(a) exact recovery: the target's indicator vector lies in the row space of the
    released equations (numpy SVD);
(b) the interval attack: min and max of the target under the equations with
    non-negativity (scipy linprog, HiGHS); recovered if [lo, hi] lies inside
    [0.9 x, 1.1 x];
(c) a published ``largest_share`` times the cell's energy, for the cell's largest
    delivery point (within 10 %).

Nothing may be recovered. ``test_the_attacker_recovers_households_from_upserts``
runs the same attacker on the provisional upserts (energy.aggregates.v1, which
publish re-sent to the public before the release rule): there it does recover
cells and delivery points, so the attacker is not toothless.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from scipy import sparse
from scipy.optimize import linprog
from scipy.sparse.linalg import lsqr

from services.energy.secrecy import SecrecyPolicy
from services.energy.stage import EnergyStage, EnergyTopics
from services.energy.windows import DAY_US, HOUR_US, QUARTER_US
from services.policy.sharing import SharingPolicy
from services.publish.republish import PublicTopics, Republisher
from services.runtime.config import NodeConfig
from services.runtime.errors import RejectedInput
from services.runtime.processor import Emit, InputMeta
from testkit.energy import deliver, energy_observation

T0 = 1_763_766_000_000_000  # the day under attack: 2025-11-22 in Paris, from 2025-11-21T23:00Z
TOPICS = EnergyTopics()
ZONES = ("Z1", "Z2", "Z3")
SECTORS = ("residential", "tertiary")
OPEN = SharingPolicy("open", (), "Licence-Ouverte-2.0")
CLOCK_METER = "clock"  # reports days 2 and 3 only: moves the watermark, closes day 1
SIZES = {"PT15M": 1, "PT1H": 4, "P1D": 96}


class _Codec:
    def encode(self, record: dict[str, Any]) -> bytes:
        return b"\x00\x00\x00\x00\x01"


class _Contracts:
    """Only the too-late dead letter encodes anything inside the stage."""

    def codec(self, topic: str) -> _Codec:
        return _Codec()


def _iso(t_us: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(t_us / 1e6, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _observation(meter: str, zone: str, sector: str, start: int, values: list[float]) -> dict:
    return energy_observation(meter, zone, start, values, step_seconds=900, sector=sector)


@dataclass
class Sent:
    """One record sent, with what it says about day 1 (meter, quarter) -> value."""

    record: dict[str, Any]
    day1: dict[tuple[str, int], float] = field(default_factory=dict)


@dataclass
class World:
    """A population, the order its readings arrive in, and what reached whom."""

    seed: int
    zones: tuple[str, ...] = ZONES
    sectors: tuple[str, ...] = SECTORS
    most: int = 30  # delivery points per cell: 1 to this
    cell_of: dict[str, tuple[str, str]] = field(default_factory=dict)
    truth: dict[tuple[str, int], float] = field(default_factory=dict)  # final values
    sends: list[list[Sent]] = field(default_factory=list)  # batches
    # Every record that left, with the revision of each reading it covered.
    public: list[tuple[dict[str, Any], dict[tuple[str, int], int]]] = field(default_factory=list)
    internal: list[tuple[dict[str, Any], dict[tuple[str, int], int]]] = field(default_factory=list)

    def build(self) -> World:
        rng = np.random.default_rng(self.seed)
        cells = itertools.product(self.zones, self.sectors)
        counts = {cell: int(rng.integers(1, self.most + 1)) for cell in cells}
        counts[("Z1", "residential")] = int(rng.integers(2, 10))  # under the threshold
        counts[("Z2", self.sectors[-1])] = int(rng.integers(12, 25))  # one point dominates it
        chunks: list[Sent] = []
        for (zone, sector), n in sorted(counts.items()):
            for i in range(n):
                meter = f"{zone}-{sector[:3]}-{i:02d}"
                self.cell_of[meter] = (zone, sector)
                first = int(rng.integers(1, 60)) if rng.random() < 0.15 else 0  # joins late
                scale = 80.0 if (zone, sector) == ("Z2", self.sectors[-1]) and i == 0 else 1.0
                values = np.round(rng.uniform(0.02, 0.4, 96 - first) * scale, 3)
                for q, v in zip(range(first, 96), values, strict=True):
                    self.truth[(meter, q)] = float(v)
                cuts = sorted(
                    int(c) for c in rng.choice(np.arange(1, 96 - first), size=2, replace=False)
                )
                for a, b in itertools.pairwise([0, *cuts, 96 - first]):
                    if a == b:
                        continue
                    part = [float(v) for v in values[a:b]]
                    if rng.random() < 0.15:  # first sent wrong, corrected later
                        wrong = [round(v * float(rng.uniform(0.5, 1.5)), 3) for v in part]
                        chunks.append(self._sent(meter, zone, sector, first + a, wrong))
                    chunks.append(self._sent(meter, zone, sector, first + a, part))
        order = [int(i) for i in rng.permutation(len(chunks))]
        # A correction must come after the value it corrects.
        arrival = [chunks[i] for i in self._stable_order(chunks, order)]
        # The next day begins a third of the way in: what follows is late data.
        day2 = Sent(_observation(CLOCK_METER, "Z1", "residential", T0 + DAY_US, [0.1] * 96))
        arrival.insert(len(arrival) // 3, day2)
        batches: list[list[Sent]] = []
        while arrival:
            size = int(rng.integers(1, 16))
            batches.append(arrival[:size])
            arrival = arrival[size:]
        # Day 3 ends 48 h after day 1: the watermark closes day 1.
        batches.append(
            [Sent(_observation(CLOCK_METER, "Z1", "residential", T0 + 2 * DAY_US, [0.1] * 96))]
        )
        self.sends = batches
        return self

    @staticmethod
    def _stable_order(chunks: list[Sent], order: list[int]) -> list[int]:
        """``order``, except that sends of one meter's same quarters keep their order."""
        slots: dict[tuple[str, int], list[int]] = defaultdict(list)
        for i, sent in enumerate(chunks):
            slots[(sent.record["entity_pseudonym"], min(q for _, q in sent.day1))].append(i)
        queue = {k: iter(v) for k, v in slots.items()}
        out = []
        for i in order:
            sent = chunks[i]
            out.append(next(queue[(sent.record["entity_pseudonym"], min(q for _, q in sent.day1))]))
        return out

    @staticmethod
    def _sent(meter: str, zone: str, sector: str, first: int, values: list[float]) -> Sent:
        record = _observation(meter, zone, sector, T0 + first * QUARTER_US, values)
        return Sent(record, {(meter, first + k): v for k, v in enumerate(values)})

    def run(self) -> World:
        """Feed the real stage batch by batch; route its output through the real
        republisher, as the publish service does."""
        stage = EnergyStage(
            TOPICS,
            node=NodeConfig(),
            contracts=_Contracts(),
            clock=lambda: 0,
            lateness_us=48 * HOUR_US,
            partitions=1,
            policies={"lyon": SecrecyPolicy()},
        )
        republisher = Republisher({}, PublicTopics(), OPEN)
        revision: dict[tuple[str, int], int] = {}
        offset = 0
        for batch in self.sends:
            regrouped: list[Emit] = []
            for sent in batch:
                offset += 1
                meta = InputMeta(TOPICS.observations, 0, offset, b"k", 0)
                regrouped += list(stage.process(sent.record, meta))
            emits: list[Emit] = []
            for emit, sent in zip(regrouped, batch, strict=True):
                offset += 1
                meta = InputMeta(TOPICS.regrouped, 0, offset, emit.key.encode(), 0)
                try:
                    emits += deliver(stage, emit, meta)
                except RejectedInput as exc:  # nothing here is older than the lateness
                    raise AssertionError(f"rejected: {exc}") from exc
                for reading in sent.day1:
                    revision[reading] = revision.get(reading, -1) + 1
            emits += list(stage.end_batch())
            stage.on_commit()
            snapshot = dict(revision)
            for emit in emits:
                if emit.topic == TOPICS.aggregates:
                    self.internal.append((emit.value, snapshot))
                if emit.topic in republisher.input_topics and emit.topic != TOPICS.observations:
                    meta = InputMeta(emit.topic, 0, 0, b"k", 0)
                    for out in republisher.process(emit.value, meta):
                        self.public.append((out.value, snapshot))
        return self

    def meters_of(self, zone: str, sector: str) -> list[str]:
        return sorted(
            m for m, (z, s) in self.cell_of.items() if zone in ("*", z) and sector in ("*", s)
        )


SVD_LIMIT = 2500  # unknowns beyond which the row space is tested by sparse least squares


def _row_space(a: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the rows of ``a`` (as rows)."""
    if not a.size:
        return np.zeros((0, a.shape[1]))
    _, s, vt = np.linalg.svd(a, full_matrices=False)
    return vt[: int((s > 1e-9 * s.max()).sum())]


def _in_row_space(a: np.ndarray, basis: np.ndarray | None, t: np.ndarray) -> bool:
    """Is ``t`` a combination of the rows of ``a``: is ``t . x`` fixed by ``a x = b``?"""
    if basis is not None:
        residual = t - basis.T @ (basis @ t)
    else:  # min ||a^T y - t||: zero exactly when t is in the row space
        y = lsqr(sparse.csr_matrix(a.T), t, atol=1e-12, btol=1e-12, iter_lim=20_000)[0]
        residual = a.T @ y - t
    return bool(np.linalg.norm(residual) < 1e-6 * max(1.0, np.linalg.norm(t)))


def _quarters(record: dict[str, Any]) -> range:
    first = (record["window_start"] - T0) // QUARTER_US
    return range(first, first + SIZES[record["granularity"]])


def _cell_window(record: dict[str, Any]) -> tuple[str, str, str, int]:
    return (record["zone"], record["sector"], record["granularity"], record["window_start"])


class Attacker:
    """What the holder of ``seen`` can compute (see the module's docstring)."""

    def __init__(self, world: World, seen: list[tuple[dict[str, Any], dict]]):
        self.world = world
        day1 = [(r, s) for r, s in seen if T0 <= r["window_start"] < T0 + DAY_US]
        self.latest: dict[tuple, dict[str, Any]] = {}
        for record, _ in day1:  # what a compacted topic keeps: the last one received
            self.latest[_cell_window(record)] = record
        columns: dict[tuple[str, int, int], int] = {}
        equations: dict[tuple[int, ...], float] = {}
        for record, snapshot in day1:
            if record["energy_kwh"] is None:
                continue
            row = []
            for meter in world.meters_of(record["zone"], record["sector"]):
                for q in _quarters(record):
                    if (meter, q) in snapshot:
                        key = (meter, q, snapshot[(meter, q)])
                        row.append(columns.setdefault(key, len(columns)))
            equations[tuple(sorted(row))] = record["energy_kwh"]  # a version re-sent as it was
        self.final = {
            (m, q): columns.get((m, q, r)) for (m, q), r in self._final_revisions().items()
        }
        indices = [j for row in equations for j in row]
        pointers = np.cumsum([0, *(len(row) for row in equations)])
        a = sparse.csr_matrix(
            (np.ones(len(indices)), indices, pointers), shape=(len(equations), len(columns))
        ).tocsc()
        a.sort_indices()
        self.b = np.array(list(equations.values()))
        # Sanity: the model of the attacker is the stage's arithmetic.
        sent_values = self._revision_values()
        x = np.zeros(len(columns))
        for key, j in columns.items():
            x[j] = sent_values[key]
        assert np.abs(a @ x - self.b).max(initial=0.0) < 1e-4
        # Columns that every equation treats alike are one unknown for the attacker.
        groups: dict[tuple[int, ...], int] = {}
        self.group_of: dict[int, int] = {}
        for j in range(a.shape[1]):
            support = tuple(a.indices[a.indptr[j] : a.indptr[j + 1]])
            self.group_of[j] = groups.setdefault(support, len(groups))
        self.group_size = np.bincount(list(self.group_of.values()), minlength=len(groups))
        self.ag = np.zeros((a.shape[0], len(groups)))
        for support, g in groups.items():
            self.ag[list(support), g] = 1.0
        self._basis: np.ndarray | None = None

    @property
    def basis(self) -> np.ndarray | None:
        if self._basis is None and self.ag.shape[1] <= SVD_LIMIT:
            self._basis = _row_space(self.ag)
        return self._basis

    def _final_revisions(self) -> dict[tuple[str, int], int]:
        count: dict[tuple[str, int], int] = defaultdict(lambda: -1)
        for batch in self.world.sends:
            for sent in batch:
                for reading in sent.day1:
                    count[reading] += 1
        return dict(count)

    def _revision_values(self) -> dict[tuple[str, int, int], float]:
        """(meter, quarter, revision) -> the value that send carried."""
        count: dict[tuple[str, int], int] = defaultdict(lambda: -1)
        out = {}
        for batch in self.world.sends:
            for sent in batch:
                for reading, value in sent.day1.items():
                    count[reading] += 1
                    out[(*reading, count[reading])] = value
        return out

    # -- targets ----------------------------------------------------------------------
    def targets(self) -> list[tuple[str, list[tuple[str, int]]]]:
        """(description, the final readings it sums) of everything that must stay hidden."""
        out = []
        for (zone, sector, granularity, start), record in sorted(self.latest.items()):
            meters = self.world.meters_of(zone, sector)
            readings = [
                (m, q) for m in meters for q in _quarters(record) if (m, q) in self.world.truth
            ]
            if not readings:
                continue
            present = {m for m, _ in readings}
            if record["suppressed"]:
                out.append((f"suppressed {zone}/{sector} {granularity} {_iso(start)}", readings))
            elif zone != "*" and len(present) < 10:
                out.append((f"{len(present)} meters {zone}/{sector} {granularity}", readings))
        for meter in sorted(self.world.cell_of):
            for granularity, size in SIZES.items():
                for first in range(0, 96, size):
                    readings = [
                        (meter, q)
                        for q in range(first, first + size)
                        if (meter, q) in self.world.truth
                    ]
                    if readings:
                        out.append((f"meter {meter} {granularity} q{first}", readings))
        return out

    def recovered(self, limit: int = 5) -> list[str]:
        found = self._largest_share(limit)  # the cheapest attack first
        for what, readings in self.targets():
            if len(found) >= limit:
                break
            how = self._attack(readings)
            if how:
                found.append(f"{what}: {how}")
        return found

    def _attack(self, readings: list[tuple[str, int]]) -> str | None:
        x = sum(self.world.truth[r] for r in readings)
        columns = [self.final[r] for r in readings]
        if any(c is None for c in columns):
            return None  # a reading no released equation covers: unbounded
        n = self.ag.shape[1]
        partial = np.zeros(n)
        for c in columns:
            partial[self.group_of[c]] += 1
        whole = (partial == self.group_size) & (partial > 0)
        if np.array_equal(partial > 0, whole):  # (a) only whole unknowns can be exact
            t = whole.astype(float)
            if _in_row_space(self.ag, self.basis, t):
                return f"exact (value {x:.3f})"
        if not whole.any():
            return None  # every unknown shared with others: the minimum is 0
        # (b) the interval attack; published figures carry 1e-6 of rounding.
        slack = 1e-5 + 1e-7 * np.abs(self.b)
        bounds = []
        for sign, target in ((1.0, whole.astype(float)), (-1.0, (partial > 0).astype(float))):
            result = linprog(
                sign * target,
                A_ub=np.vstack([self.ag, -self.ag]),
                b_ub=np.concatenate([self.b + slack, -(self.b - slack)]),
                bounds=(0, None),
                method="highs",
            )
            if result.status == 3:  # unbounded above
                return None
            assert result.status == 0, result.message
            bounds.append(sign * result.fun)
            if sign > 0 and bounds[0] < 0.9 * x:
                return None
        lo, hi = bounds
        if 0.9 * x <= lo and hi <= 1.1 * x:
            return f"interval [{lo:.3f}, {hi:.3f}] around {x:.3f}"
        return None

    def _largest_share(self, limit: int) -> list[str]:
        found = []
        for (zone, sector, _, _), record in sorted(self.latest.items()):
            share = record.get("largest_share")
            if share is None or record["energy_kwh"] is None or zone == "*":
                continue
            per_meter = defaultdict(float)
            for m in self.world.meters_of(zone, sector):
                for q in _quarters(record):
                    per_meter[m] += self.world.truth.get((m, q), 0.0)
            top = max(per_meter.values())
            guess = share * record["energy_kwh"]
            if top > 0 and abs(guess - top) <= 0.1 * top:
                found.append(f"largest point of {zone}/{sector}: {guess:.3f} for {top:.3f}")
                if len(found) >= limit:
                    break
        return found


@pytest.mark.parametrize("seed", [11, 23, 37])
def test_nothing_is_recovered_from_everything_released(seed: int) -> None:
    world = World(seed).build().run()
    assert world.public, "nothing was released at all"
    # A withheld cell says that it is withheld, never which rule (a per-window reason
    # would tell its meter count's class: 1 to 9, or none or at least 10).
    reasons = {r["suppression_reason"] for r, _ in world.public if r["suppressed"]}
    assert reasons <= {"confidential"}, reasons
    attacker = Attacker(world, world.public)
    assert attacker.recovered() == []


def test_the_attacker_recovers_households_from_upserts() -> None:
    """The same attacker on the provisional upserts (kept internal now) finds them
    (a smaller city: every version of every window makes a large system)."""
    world = World(11, zones=("Z1", "Z2", "Z3"), sectors=("residential",), most=12).build().run()
    assert Attacker(world, world.internal).recovered(limit=1)
