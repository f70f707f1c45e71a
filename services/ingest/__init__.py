"""Ingest: the edge of Cité+.

City systems push batches in the transport they already speak (CSV exports,
JSON, Smart Data Models / NGSI, Linky télé-information frames). Ingest turns each
batch into one column-wise block of rows per entity (:mod:`services.ingest.batch`)
so that later stages decode one message for many readings, and it rejects what it
cannot read with a reason and the original bytes instead of guessing.

The parsers in :mod:`services.ingest.formats` are pure functions of
``(bytes, SourceConfig)``; Kafka and HTTP are wired around them elsewhere.
"""
