"""The common API of every city: NGSI-LD over HTTP/JSON, with keys and quotas.

It reads every city, its own node's included, through the federation gRPC API of this
node and its peers (services.federation.client), so that one place (services.policy)
decides who sees what; it never opens the warehouse. docs/api.md is its guide.
"""
