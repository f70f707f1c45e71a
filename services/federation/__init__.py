"""federation: the gRPC API between Cité+ nodes (proto/citeplus/federation/v1) —
catalogue, schemas, aggregate queries, subscriptions and federated queries over
mutual TLS, authorised by the sharing sections of the city files. Served by the
publish service (hook.py) or alone (``citeplus federation serve``); docs/federation.md."""
