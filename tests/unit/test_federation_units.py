"""Federation pieces without a broker: configuration, who sees what, request
validation, page tokens, SQL literals, certificates, peer outcomes, error statuses."""

from __future__ import annotations

import datetime as dt
import re
import stat
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from services.federation import certs as certificates
from services.federation.calls import Caller, CallMetrics, FederationError, handled
from services.federation.catalog import Datasets, FederationTopics
from services.federation.fanout import outcome_of
from services.federation.protos import codegen, is_current, pb
from services.federation.queries import quote, rollup_sql, validate
from services.policy.federation import load_federation, load_peers_file
from services.policy.sharing import SharingPolicy
from services.runtime.cities import load_cities
from services.runtime.config import load_node_config
from services.runtime.errors import CiteplusError, ConfigError

T0 = 1_736_722_800
OPEN = SharingPolicy("open", (), "ODbL-1.0")
TO_PARIS = SharingPolicy("shared", ("paris",), None)
INTERNAL = SharingPolicy()


# -- configuration ---------------------------------------------------------------------


def peers_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "federation.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_repository_federation_file_loads_with_defaults() -> None:
    node = load_node_config(env={})
    config = load_federation(node)
    assert config.identity == (node.federation.identity or node.node.id)
    assert config.peers == ()
    assert config.energy_aggregates.level == "open"
    assert config.certificates.cert.name == f"{config.identity}.pem"
    assert config.certs_dir.parts[-2:] == ("federation", "certs")


def test_peers_file_errors_name_file_and_key(tmp_path: Path) -> None:
    cases = {
        "peers: [{code: Paris, address: 'a:1'}]": "peers[0].code",
        "peers: [{code: paris, address: nowhere}]": "peers[0].address",
        "peers: [{code: paris, address: 'a:1', port: 2}]": "peers[0]: unknown keys",
        "peers: [{code: lyon, address: 'a:1'}]": "not its own peer",
        "peers: [{code: paris, address: 'a:1'}, {code: paris, address: 'b:2'}]": "listed twice",
        "energy_aggregates: {level: open}": "energy_aggregates.licence",
        "peer: []": "unknown keys",
    }
    for text, expected in cases.items():
        path = peers_file(tmp_path, text)
        with pytest.raises(ConfigError) as caught:
            load_peers_file(path, "lyon")
        assert str(path) in str(caught.value) and expected in str(caught.value), text
    peers, aggregates = load_peers_file(
        peers_file(
            tmp_path, "peers: [{code: paris, address: 'p:7443', cities: [paris, nanterre]}]"
        ),
        "lyon",
    )
    assert peers[0].cities == ("paris", "nanterre") and aggregates.licence


def test_node_file_federation_section_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "node.yaml"
    path.write_text("federation:\n  listen: nowhere\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"federation\.listen"):
        load_node_config(path, env={})
    path.write_text("node:\n  id: Dev Node\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"node\.id"):
        load_federation(load_node_config(path, env={}))
    config = load_node_config(path, env={"CITEPLUS_FEDERATION_IDENTITY": "lyon"})
    assert load_federation(config).identity == "lyon"


# -- who sees what -----------------------------------------------------------------------


def test_sharing_matrix() -> None:
    paris, nice, lyon = Caller("paris"), Caller("nice"), Caller("lyon")
    assert all(c.may_see(OPEN, "lyon") for c in (paris, nice, lyon))
    assert paris.may_see(TO_PARIS, "lyon") and not nice.may_see(TO_PARIS, "lyon")
    assert lyon.may_see(TO_PARIS, "lyon")  # the node's own operators see what it shares
    assert not any(c.may_see(INTERNAL, "lyon") for c in (paris, nice, lyon))
    # On behalf of someone: only what both may see.
    assert not Caller("paris", on_behalf_of="nice").may_see(TO_PARIS, "lyon")
    assert not Caller("nice", on_behalf_of="paris").may_see(TO_PARIS, "lyon")
    assert Caller("nice", on_behalf_of="paris").may_see(OPEN, "lyon")


def lyon_datasets(tmp_path: Path) -> Datasets:
    (tmp_path / "lyon.yaml").write_text(
        """code: lyon
name: Lyon
timezone: Europe/Paris
sources:
  - {id: air, format: ndjson, dataset: air-quality-observed, domain: environment, entity: id,
     token: 'env:T', sharing: {level: open, licence: ODbL-1.0}}
  - {id: meters, format: ndjson, dataset: load-curves, domain: energy, entity: id,
     token: 'env:T', sharing: {level: shared, partners: [paris]}}
  - {id: water, format: ndjson, dataset: water, domain: water, entity: id, token: 'env:T'}
""",
        encoding="utf-8",
    )
    return Datasets(load_cities(tmp_path), OPEN, "lyon")


def test_refusal_is_the_same_for_internal_and_missing_datasets(tmp_path: Path) -> None:
    datasets = lyon_datasets(tmp_path)
    assert [d.id for d in datasets.visible(Caller("nice"))] == [
        "lyon/air",
        "lyon/energy-aggregates",
    ]
    messages = set()
    for dataset in ("lyon/meters", "lyon/water", "lyon/absent"):
        with pytest.raises(FederationError) as caught:
            datasets.require(dataset, Caller("nice"))
        assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
        messages.add(caught.value.message.replace(dataset, "X"))
    assert len(messages) == 1  # nothing tells an internal dataset from a missing one
    with pytest.raises(FederationError) as caught:
        datasets.require("lyon", Caller("nice"))
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_each_caller_is_given_the_topic_publish_writes_for_it(tmp_path: Path) -> None:
    """Shared datasets and shared energy aggregates sit on the partner's own topic
    (what a per-partner Kafka ACL protects); open ones on the public topic."""
    topics = FederationTopics("n1.")
    datasets = lyon_datasets(tmp_path)
    paris = Caller("paris")
    assert datasets.all["lyon/air"].topic_for(paris, topics) == "n1.public.observations.v1"
    assert datasets.all["lyon/meters"].topic_for(paris, topics) == (
        "n1.public.shared.paris.observations.v1"
    )
    assert datasets.all["lyon/energy-aggregates"].topic_for(paris, topics) == (
        "n1.public.energy.aggregates.v2"
    )
    shared = Datasets(load_cities(tmp_path), TO_PARIS, "lyon").all["lyon/energy-aggregates"]
    assert shared.topic_for(paris, topics) == "n1.public.shared.paris.energy.aggregates.v2"


# -- request validation ------------------------------------------------------------------


def query(**fields) -> pb.AggregateQuery:
    request = pb.AggregateQuery(
        kind=pb.AGGREGATE_KIND_OBSERVATION_ROLLUPS,
        metrics=["no2"],
        granularity=pb.GRANULARITY_PT1H,
    )
    request.start.FromSeconds(T0)
    request.end.FromSeconds(T0 + 86400)
    for name, value in fields.items():
        if name in ("start", "end"):
            getattr(request, name).FromSeconds(value)
        elif isinstance(value, list):
            getattr(request, name).extend(value)
        else:
            setattr(request, name, value)
    return request


@pytest.mark.parametrize(
    ("fields", "field_name"),
    [
        ({"kind": 0}, "kind"),
        ({"granularity": 0}, "granularity"),
        ({"end": T0}, "end"),
        ({"end": T0 + 400 * 86400}, "end"),
        ({"start": 0}, "start"),
        ({"page_size": 10_001}, "page_size"),
        ({"metrics": ["sulfur"]}, "metrics"),
        ({"metrics": ["NO2"]}, "metrics"),
        ({"zones": ["a' OR 1=1 --"]}, "zones"),
        ({"cities": ["Lyon"]}, "cities"),
        ({"carriers": ["electricity"]}, "carriers"),
        ({"page_token": "!!"}, "page_token"),
    ],
)
def test_invalid_fields_are_named(tmp_path: Path, fields: dict, field_name: str) -> None:
    with pytest.raises(FederationError) as caught:
        validate(query(**fields), Caller("paris"), lyon_datasets(tmp_path), frozenset({"no2"}))
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.message.startswith(field_name)


def test_energy_queries_take_no_metrics_and_start_end_are_required(tmp_path: Path) -> None:
    datasets = lyon_datasets(tmp_path)
    energy = query(kind=pb.AGGREGATE_KIND_ENERGY_AGGREGATES)
    with pytest.raises(FederationError, match=r"^metrics: do not apply"):
        validate(energy, Caller("paris"), datasets, frozenset({"no2"}))
    bare = pb.AggregateQuery(kind=1, metrics=["no2"], granularity=2)
    with pytest.raises(FederationError, match=r"^start: required"):
        validate(bare, Caller("paris"), datasets, frozenset({"no2"}))


def test_rollups_cover_only_visible_datasets(tmp_path: Path) -> None:
    datasets = lyon_datasets(tmp_path)
    known = frozenset({"no2"})
    assert validate(query(), Caller("paris"), datasets, known).sources == (
        ("lyon", "air"),
        ("lyon", "meters"),
    )
    assert validate(query(), Caller("nice"), datasets, known).sources == (("lyon", "air"),)
    assert validate(query(cities=["paris"]), Caller("nice"), datasets, known).sources == ()
    with pytest.raises(FederationError) as caught:
        validate(query(datasets=["lyon/meters"]), Caller("nice"), datasets, known)
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED


def test_page_tokens_are_bound_to_their_question_and_caller(tmp_path: Path) -> None:
    from services.federation.queries import encode_token, fingerprint

    datasets = lyon_datasets(tmp_path)
    known = frozenset({"no2", "active_energy_import"})
    base = query()
    token = encode_token(fingerprint(base, Caller("paris")), ("lyon", "no2", "z1", "", 0))
    resumed = validate(query(page_token=token), Caller("paris"), datasets, known)
    assert resumed.after == ("lyon", "no2", "z1", "", 0)
    assert validate(query(page_token=token, page_size=9), Caller("paris"), datasets, known).after
    for request, caller in (
        (query(page_token=token, metrics=["active_energy_import"]), Caller("paris")),
        (query(page_token=token), Caller("nice")),
    ):
        with pytest.raises(FederationError, match=r"^page_token: belongs to another question"):
            validate(request, caller, datasets, known)


def test_sql_literals_are_escaped_and_sources_restricted(tmp_path: Path) -> None:
    assert quote("a'b\\c") == "'a\\'b\\\\c'"
    question = validate(query(), Caller("nice"), lyon_datasets(tmp_path), frozenset({"no2"}))
    sql = rollup_sql(question, {"lyon": "Europe/Paris"}, 10)
    assert "(city, source) IN (('lyon', 'air'))" in sql
    assert "toStartOfHour(ts)" in sql and "LIMIT 10" in sql
    daily = validate(
        query(granularity=pb.GRANULARITY_P1D), Caller("nice"), lyon_datasets(tmp_path), {"no2"}
    )
    assert "toStartOfDay(ts, 'Europe/Paris')" in rollup_sql(daily, {"lyon": "Europe/Paris"}, 10)


# -- peers and errors --------------------------------------------------------------------


def test_peer_outcomes() -> None:
    assert outcome_of(grpc.StatusCode.DEADLINE_EXCEEDED) == pb.PEER_OUTCOME_TIMED_OUT
    assert outcome_of(grpc.StatusCode.UNAVAILABLE) == pb.PEER_OUTCOME_UNREACHABLE
    assert outcome_of(grpc.StatusCode.PERMISSION_DENIED) == pb.PEER_OUTCOME_REFUSED
    assert outcome_of(grpc.StatusCode.INVALID_ARGUMENT) == pb.PEER_OUTCOME_REFUSED
    assert outcome_of(grpc.StatusCode.INTERNAL) == pb.PEER_OUTCOME_FAILED


class Aborted(Exception):
    pass


class FakeContext:
    def __init__(self, identity: bytes | None):
        self.identity = identity
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def auth_context(self) -> dict:
        return {"x509_common_name": [self.identity]} if self.identity else {}

    def invocation_metadata(self) -> tuple:
        return ()

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def abort(self, code: grpc.StatusCode, message: str) -> None:
        self.aborted = (code, message)
        raise Aborted()


class Servicer:
    call_metrics = CallMetrics()

    @handled("Broken")
    def broken(self, request, context, call):
        raise KeyError("secret internals")

    @handled("Streams")
    def streams(self, request, context, call):
        yield 1
        raise FederationError(grpc.StatusCode.OUT_OF_RANGE, "too far")


def test_unexpected_errors_become_internal_with_a_reference_not_a_trace() -> None:
    context = FakeContext(b"paris")
    with pytest.raises(Aborted):
        Servicer().broken(None, context)
    code, message = context.aborted
    assert code == grpc.StatusCode.INTERNAL
    assert "reference" in message and "secret" not in message and "Traceback" not in message
    context = FakeContext(b"paris")
    stream = Servicer().streams(None, context)
    assert next(stream) == 1
    with pytest.raises(Aborted):
        next(stream)
    assert context.aborted == (grpc.StatusCode.OUT_OF_RANGE, "too far")
    anonymous = FakeContext(None)
    with pytest.raises(Aborted):
        Servicer().broken(None, anonymous)
    assert anonymous.aborted[0] == grpc.StatusCode.UNAUTHENTICATED


# -- certificates and generated code ---------------------------------------------------


def test_dev_certificates_keys_are_private_and_kept(tmp_path: Path) -> None:
    folder = tmp_path / "certs"
    created, issued = certificates.ensure_dev_certificates(folder, ["lyon", "paris", "lyon"])
    assert created and [i.identity for i in issued] == ["lyon", "paris"]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("ca.key", "lyon.key", "paris.key"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((folder / "paris.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "paris" in names.get_values_for_type(x509.DNSName)
    assert certificates.identity_of((folder / "paris.pem").read_bytes()) == "paris"
    assert cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=300)
    again, kept = certificates.ensure_dev_certificates(folder, ["paris"])
    assert not again and not kept[0].created
    _, renewed = certificates.ensure_dev_certificates(folder, ["paris"], renew=True)
    assert renewed[0].created


def test_keys_are_never_written_where_git_would_take_them() -> None:
    from services.runtime.paths import REPO_ROOT

    with pytest.raises(CiteplusError, match="not ignored by git"):
        certificates.ensure_outside_git(REPO_ROOT / "deploy" / "certs")
    certificates.ensure_outside_git(REPO_ROOT / "var" / "federation" / "certs")


def test_generated_code_is_current_and_reflects_the_proto() -> None:
    codegen()
    assert is_current()
    service = pb.DESCRIPTOR.services_by_name["Federation"]
    assert service.full_name == "citeplus.federation.v1.Federation"
    assert {m.name for m in service.methods} == {
        "GetCatalog",
        "GetSchema",
        "QueryAggregates",
        "Subscribe",
        "FederatedQuery",
        "QueryEntities",
        "QueryTemporal",
    }
    assert service.methods_by_name["Subscribe"].server_streaming
    assert service.methods_by_name["QueryEntities"].server_streaming


# -- the hook publish calls ---------------------------------------------------------------


class NoWarehouse:
    description = "none"

    def query_arrow(self, sql: str):
        raise AssertionError("the warehouse is not asked before a call needs it")


def test_publish_hook_serves_only_a_node_with_a_certificate(tmp_path: Path) -> None:
    from services.federation.client import FederationClient
    from services.federation.hook import federation_beside_publish
    from services.runtime.codec import Contracts
    from services.warehouse.port import open_warehouse

    path = tmp_path / "node.yaml"
    path.write_text(
        f"node: {{id: lyon, state_dir: '{tmp_path / 'state'}'}}\n"
        "federation: {listen: '127.0.0.1:0'}\n",
        encoding="utf-8",
    )
    node = load_node_config(path, env={})
    contracts = Contracts({})
    assert federation_beside_publish(node, contracts, {}, NoWarehouse()) is None  # no certificate

    certs_dir = load_federation(node).certs_dir
    certificates.ensure_dev_certificates(certs_dir, ["lyon", "paris"])
    # Serving, a node answers health from its warehouse (a real chDB here).
    warehouse = open_warehouse(node, path=tmp_path / "chdb")
    server = federation_beside_publish(node, contracts, {}, warehouse)
    assert server is not None
    server.start()
    try:
        paths = load_federation(node)
        with FederationClient.connect(
            server.address, replace_identity(paths.certificates, "paris"), "lyon"
        ) as client:
            assert client.health() == "SERVING"
            with pytest.raises(grpc.RpcError) as caught:
                client.schema("lyon/anything")
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            warehouse.close()
            assert not server.health_watch.check()
            assert client.health() == "NOT_SERVING"
    finally:
        server.stop(grace=1)


def replace_identity(paths, identity: str):
    from services.policy.federation import certificate_paths

    return certificate_paths(paths.ca.parent, identity)


# -- reading a record's dataset without decoding it ---------------------------------------


def test_avro_peek_reads_what_fastavro_reads() -> None:
    import io

    import fastavro
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from services.federation.avro_peek import compile_peek
    from services.runtime.schemas import load_schemas

    schema = {
        "type": "record",
        "name": "Probe",
        "namespace": "t",
        "fields": [
            {"name": "a", "type": {"type": "array", "items": "double"}},
            {"name": "b", "type": {"type": "map", "values": ["null", "long"]}},
            {"name": "c", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y"]}},
            {"name": "d", "type": {"type": "fixed", "name": "F", "size": 3}},
            {"name": "e", "type": ["null", {"type": "record", "name": "R", "fields": [
                {"name": "x", "type": "float"}, {"name": "y", "type": "boolean"}]}]},
            {"name": "f", "type": {"type": "array", "items": "R"}},
            {"name": "g", "type": {"type": "array", "items": "int"}},
            {"name": "city", "type": "string"},
            {"name": "h", "type": "bytes"},
            {"name": "source", "type": "string"},
            {"name": "tail", "type": {"type": "array", "items": "long"}},
        ],
    }  # fmt: skip
    parsed = fastavro.parse_schema(schema)
    peek = compile_peek(schema, ("city", "source"))
    text = st.text(max_size=20)

    @settings(max_examples=150, deadline=None)
    @given(
        a=st.lists(st.floats(allow_nan=False), max_size=300),
        b=st.dictionaries(text, st.none() | st.integers(-(2**63), 2**63 - 1), max_size=5),
        f=st.lists(st.tuples(st.floats(width=32, allow_nan=False), st.booleans()), max_size=5),
        g=st.lists(st.integers(-(2**31), 2**31 - 1), max_size=50),
        city=text,
        source=text,
    )
    def agree(a, b, f, g, city, source) -> None:
        record = {
            "a": a,
            "b": b,
            "c": "Y",
            "d": b"xyz",
            "e": {"x": 1.5, "y": True},
            "f": [{"x": x, "y": y} for x, y in f],
            "g": g,
            "city": city,
            "h": b"\x00\xff",
            "source": source,
            "tail": [1, 2],
        }
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, parsed, record)
        assert peek(b"\x00" * 5 + buffer.getvalue(), 5) == {"city": city, "source": source}

    agree()
    observation = load_schemas()["Observation"].expanded
    assert [f["name"] for f in observation["fields"]].index("source") > 10  # after the arrays
    compile_peek(observation, ("city", "source"))
    compile_peek(load_schemas()["EnergyAggregate"].expanded, ("city",))
    compile_peek(load_schemas()["EnergyAggregateRelease"].expanded, ("city",))


def test_limits_of_the_federation_file_are_validated(tmp_path: Path) -> None:
    from services.policy.federation import load_limits
    from services.policy.limits import FederationLimits
    from services.runtime.paths import REPO_ROOT

    assert load_limits(peers_file(tmp_path, "peers: []")) == FederationLimits()
    shipped = load_limits(REPO_ROOT / "deploy" / "federation.yaml")
    assert shipped == FederationLimits()  # the file documents the defaults
    cases = {
        "limits: {subscriptions_per_caller: 0}": "limits.subscriptions_per_caller: must be above 0",
        "limits: {queries_per_caller: 2.5}": "limits.queries_per_caller: expected a whole number",
        "limits: {per_partner: 3}": "unknown keys ['per_partner']",
        "limits: {subscriptions_per_caller: 40}": "subscriptions_per_caller above",
        "limits: {subscriptions_own: 40}": "subscriptions_own above",
    }
    for text, expected in cases.items():
        with pytest.raises(ConfigError, match=re.escape(expected)):
            load_limits(peers_file(tmp_path, text))


def test_a_caller_quota_refuses_only_that_caller_and_names_its_own_quota() -> None:
    import grpc

    from services.federation.calls import FederationError
    from services.federation.quotas import CallerQuotas
    from services.policy.limits import FederationLimits

    quotas = CallerQuotas.of(
        "subscriptions", FederationLimits(subscriptions_per_caller=2, subscriptions_total=3)
    )
    with quotas.slot("paris"), quotas.slot("paris"):
        with pytest.raises(FederationError) as caught, quotas.slot("paris"):
            pass
        assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "paris already holds 2 of its 2" in caught.value.message
        with quotas.slot("nice"):
            with pytest.raises(FederationError) as full, quotas.slot("angers"):
                pass
            assert "paris" not in full.value.message and "nice" not in full.value.message
    assert quotas.held("paris") == 0 and quotas.held("nice") == 0
