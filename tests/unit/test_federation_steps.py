"""What a partner's request meets at the federation's edge, pinned in detail: the
first fault of a request with several is the one refused, with its exact reason
(validate is a trust boundary: its order and its words are part of the contract);
and the status every node of a FederatedQuery gets (rows, outcome, reason) whether
it answered, refused, failed or could not be reached. No broker, no warehouse."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from services.federation import certs as certificates
from services.federation.calls import Caller, FederationError
from services.federation.catalog import Datasets
from services.federation.fanout import Fanout
from services.federation.protos import pb
from services.federation.queries import validate
from services.policy.federation import FederationConfig, Peer
from services.policy.sharing import SharingPolicy
from services.runtime.cities import load_cities

T0 = 1_736_722_800
DAY = 86_400
KNOWN = frozenset({"no2"})
ROLLUPS, ENERGY = pb.AGGREGATE_KIND_OBSERVATION_ROLLUPS, pb.AGGREGATE_KIND_ENERGY_AGGREGATES
INVALID, DENIED = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED


@pytest.fixture
def datasets(tmp_path: Path) -> Datasets:
    (tmp_path / "lyon.yaml").write_text(
        """code: lyon
name: Lyon
timezone: Europe/Paris
sources:
  - {id: air, format: ndjson, dataset: air-quality-observed, domain: environment, entity: id,
     token: 'env:T', sharing: {level: open, licence: ODbL-1.0}}
  - {id: water, format: ndjson, dataset: water, domain: water, entity: id, token: 'env:T'}
""",
        encoding="utf-8",
    )
    return Datasets(load_cities(tmp_path), SharingPolicy("open", (), "ODbL-1.0"), "lyon")


def request(*, start: int | None = T0, end: int | None = T0 + DAY, **fields) -> pb.AggregateQuery:
    query = pb.AggregateQuery(kind=ROLLUPS, granularity=pb.GRANULARITY_PT1H, metrics=["no2"])
    if start is not None:
        query.start.FromSeconds(start)
    if end is not None:
        query.end.FromSeconds(end)
    for name, value in fields.items():
        if isinstance(value, list):
            del getattr(query, name)[:]
            getattr(query, name).extend(value)
        else:
            setattr(query, name, value)
    return query


REFUSALS = [
    # Several faults at once: the earliest check names its field, nothing else.
    (
        {"kind": 9, "granularity": 0, "page_size": 10_001},
        INVALID,
        "kind: OBSERVATION_ROLLUPS or ENERGY_AGGREGATES",
    ),
    (
        {"granularity": 0, "start": None, "cities": ["Lyon"]},
        INVALID,
        "granularity: PT15M, PT1H or P1D",
    ),
    ({"start": None, "end": None}, INVALID, "start: required"),
    ({"end": None, "page_size": 10_001}, INVALID, "end: required"),
    ({"start": 0, "end": 0}, INVALID, "start: must fall between 2000 and 2100"),
    ({"end": 4_200_000_000}, INVALID, "end: must fall between 2000 and 2100"),
    ({"end": T0, "page_size": 10_001}, INVALID, "end: must be after start"),
    ({"end": T0 + 367 * DAY}, INVALID, "end: at most 366 days at PT1H; split the range"),
    ({"page_size": 10_001, "cities": ["Lyon"]}, INVALID, "page_size: at most 10000, got 10001"),
    ({"cities": ["Lyon"], "metrics": ["NO2"]}, INVALID, "cities: 'Lyon' is not a valid value"),
    ({"cities": ["lyon"] * 51}, INVALID, "cities: at most 50 values, got 51"),
    ({"metrics": ["NO2"], "zones": [""]}, INVALID, "metrics: 'NO2' is not a valid value"),
    (
        {"zones": ["a' OR 1=1 --"], "carriers": ["Bad"]},
        INVALID,
        'zones: "a\' OR 1=1 --" is not a valid value',
    ),
    ({"carriers": ["Bad"], "sectors": ["Bad"]}, INVALID, "carriers: 'Bad' is not a valid value"),
    (
        {"sectors": ["Bad"], "datasets": ["lyon/water"]},
        INVALID,
        "sectors: 'Bad' is not a valid value",
    ),
    (
        {"datasets": [f"lyon/d{i}" for i in range(201)], "metrics": []},
        INVALID,
        "datasets: at most 200 values",
    ),
    (
        {"datasets": ["lyon"], "metrics": []},
        INVALID,
        "datasets: expected <city>/<source> as GetCatalog lists, got 'lyon'",
    ),
    (
        {"datasets": ["lyon/water"], "metrics": []},
        DENIED,
        "dataset 'lyon/water' is not available to paris on this node (GetCatalog lists what is)",
    ),
    (
        {"metrics": [], "carriers": ["gas"]},
        INVALID,
        "metrics: name at least one metric of the controlled vocabulary",
    ),
    (
        {"metrics": ["no2", "so2"], "carriers": ["gas"]},
        INVALID,
        "metrics: unknown metric 'so2' (not in the vocabulary)",
    ),
    (
        {"carriers": ["gas"], "sectors": ["home"]},
        INVALID,
        "carriers: apply to energy aggregates only",
    ),
    (
        {"sectors": ["home"], "page_token": "!!"},
        INVALID,
        "sectors: apply to energy aggregates only",
    ),
    (
        {"kind": ENERGY, "page_token": "!!"},
        INVALID,
        "metrics: do not apply to energy aggregates (rows carry energy_kwh, meter_count, "
        "peak_kw); filter with carriers, sectors and zones",
    ),
    ({"page_token": "!!"}, INVALID, "page_token: not a token this API returned"),
]


@pytest.mark.parametrize(("fields", "code", "reason"), REFUSALS)
def test_the_first_fault_of_a_request_is_refused_with_its_exact_reason(
    datasets: Datasets, fields: dict, code: grpc.StatusCode, reason: str
) -> None:
    with pytest.raises(FederationError) as caught:
        validate(request(**fields), Caller("paris"), datasets, KNOWN)
    assert (caught.value.code, caught.value.message) == (code, reason)


def test_a_valid_request_becomes_the_question_asked(datasets: Datasets) -> None:
    question = validate(request(zones=["z1", "z1"]), Caller("paris"), datasets, KNOWN)
    assert (question.cities, question.sources, question.domains) == (
        ("lyon",),
        (("lyon", "air"),),
        ("environment",),
    )
    assert (question.zones, question.datasets, question.page_size) == (("z1",), ("lyon/air",), 1000)
    energy = validate(request(kind=ENERGY, metrics=[]), Caller("paris"), datasets, KNOWN)
    assert (energy.cities, energy.sources, energy.datasets) == (
        ("lyon",),
        (),
        ("lyon/energy-aggregates",),
    )


# -- FederatedQuery: each node's status ---------------------------------------------------


def fanout(tmp_path: Path, peers: tuple[Peer, ...] = ()) -> Fanout:
    certs = tmp_path / "certs"
    certificates.ensure_dev_certificates(certs, ["lyon"])
    return Fanout(
        FederationConfig(
            identity="lyon",
            listen="127.0.0.1:0",
            certs_dir=certs,
            peers=peers,
            energy_aggregates=SharingPolicy(),
            peer_timeout_s=5.0,
            enabled=True,
            source="test",
        )
    )


def answers(node: Fanout, local, peers: list[Peer] = ()) -> tuple[list, list, object]:
    query = pb.FederatedQueryRequest(query=request())
    try:
        responses = list(node.run(query, Caller("paris"), list(peers), 5.0, local))
    finally:
        node.close()
    pages = [r.page for r in responses if r.WhichOneof("item") == "page"]
    statuses = [r.peer for r in responses if r.WhichOneof("item") == "peer"]
    assert responses[-1].WhichOneof("item") == "summary"
    return pages, statuses, responses[-1].summary


def rollup_page(rows: int, last: bool) -> pb.AggregatePage:
    page = pb.AggregatePage(node="lyon", last=last)
    page.rollups.extend(pb.ObservationRollup(city="lyon", metric="no2") for _ in range(rows))
    return page


def test_a_local_answer_is_forwarded_page_by_page_and_counted_once(tmp_path: Path) -> None:
    pages, statuses, summary = answers(
        fanout(tmp_path), lambda: iter([rollup_page(2, False), rollup_page(1, True)])
    )
    assert [len(p.rollups) for p in pages] == [2, 1]
    assert [(s.node, s.outcome, s.status, s.rows) for s in statuses] == [
        ("lyon", pb.PEER_OUTCOME_ANSWERED, "OK", 3)
    ]
    assert summary.rows == 3 and list(summary.peers) == statuses


@pytest.mark.parametrize(
    ("error", "outcome", "status", "message"),
    [
        (
            FederationError(grpc.StatusCode.PERMISSION_DENIED, "not yours"),
            pb.PEER_OUTCOME_REFUSED,
            "PERMISSION_DENIED",
            "not yours",
        ),
        (ValueError("a trace nobody should see"), pb.PEER_OUTCOME_FAILED, "INTERNAL", "ValueError"),
    ],
)
def test_a_local_refusal_or_failure_keeps_the_rows_sent_before_it(
    tmp_path: Path, error: Exception, outcome: int, status: str, message: str
) -> None:
    def local():
        yield rollup_page(2, False)
        raise error

    pages, statuses, summary = answers(fanout(tmp_path), local)
    assert len(pages) == 1 and summary.rows == 2
    assert [(s.outcome, s.status, s.message, s.rows) for s in statuses] == [
        (outcome, status, message, 2)
    ]


def test_a_peer_nobody_listens_for_is_reported_unreachable_next_to_the_local_answer(
    tmp_path: Path,
) -> None:
    gone = Peer(code="paris", address="127.0.0.1:9", cities=("paris",))
    pages, statuses, summary = answers(
        fanout(tmp_path, (gone,)), lambda: iter([rollup_page(1, True)]), [gone]
    )
    by_node = {s.node: (s.outcome, s.status, s.rows) for s in statuses}
    assert by_node == {
        "lyon": (pb.PEER_OUTCOME_ANSWERED, "OK", 1),
        "paris": (pb.PEER_OUTCOME_UNREACHABLE, "UNAVAILABLE", 0),
    }
    assert summary.rows == 1 and len(pages) == 1
