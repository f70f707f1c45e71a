"""Streaming decompression within a cap (services/ingest/body.py) and the excerpt
rule of answers: pure, so every split of a stream is tried without a server."""

from __future__ import annotations

import itertools
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.body import BodyRefused, BodyTooLarge, Inflater
from services.ingest.limits import excerpt


def compress(data: bytes, wbits: int) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return packer.compress(data) + packer.flush()


def inflate(encoding: str, cap: int, stream: bytes, cuts: list[int]) -> bytes:
    inflater = Inflater(encoding, cap)
    edges = [0, *sorted(c % (len(stream) + 1) for c in cuts), len(stream)]
    out = b"".join(
        piece for a, b in itertools.pairwise(edges) for piece in inflater.feed(stream[a:b])
    )
    inflater.finish()
    return out


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=5000).map(lambda b: b * 20),
    encoding=st.sampled_from([("gzip", 31), ("deflate", 15), ("deflate", -15), ("identity", 0)]),
    cuts=st.lists(st.integers(min_value=0), max_size=6),
)
def test_any_split_of_a_stream_inflates_to_the_same_bytes(data, encoding, cuts) -> None:
    name, wbits = encoding
    stream = data if name == "identity" else compress(data, wbits)
    assert inflate(name, len(data), stream, cuts) == data


BOMB = compress(b"\0" * 1_000_000, 31)


@settings(max_examples=30, deadline=None)
@given(
    cap=st.integers(min_value=0, max_value=300_000),
    cuts=st.lists(st.integers(min_value=0), max_size=4),
)
def test_a_bomb_is_never_inflated_past_the_cap(cap: int, cuts: list[int]) -> None:
    bomb = BOMB
    inflater = Inflater("gzip", cap)
    edges = [0, *sorted(c % (len(bomb) + 1) for c in cuts), len(bomb)]
    with pytest.raises(BodyTooLarge):
        for a, b in itertools.pairwise(edges):
            for _ in inflater.feed(bomb[a:b]):
                pass
    assert inflater.produced == cap + 1


def test_corrupt_and_truncated_streams_are_refused() -> None:
    with pytest.raises(BodyRefused, match="not valid compressed data"):
        list(Inflater("gzip", 1000).feed(b"\x1f\x8b\x08\x00garbage-garbage"))
    inflater = Inflater("gzip", 10_000)
    list(inflater.feed(compress(b"x" * 5000, 31)[:-8]))
    with pytest.raises(BodyRefused, match="truncated"):
        inflater.finish()


def test_an_excerpt_is_short_and_says_how_long_the_value_was() -> None:
    assert excerpt("m1") == "m1"
    cut = excerpt("M" * 10_000_000)
    assert len(cut) < 250 and cut.startswith("M" * 200) and "10,000,000 characters" in cut
