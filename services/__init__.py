"""Cité+ services: the shared runtime and one package per pipeline stage.

Stages never import each other; they meet on Kafka topics whose values are the
Avro records declared in ``avro/``.
"""
