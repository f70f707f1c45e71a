"""federation: the gRPC API between Cité+ nodes (proto/citeplus/federation/v1) —
catalogue, schemas, aggregate queries, subscriptions and federated queries over
mutual TLS, authorised by the sharing sections of the city files. Served in the
publish process (hook.py, put there by services/node/publish_process.py) or alone
(``citeplus federation serve``); docs/federation.md."""
