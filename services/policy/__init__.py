"""policy: what may leave the node, and for whom: configuration read once at start.

``sharing`` (the ``sharing:`` section of each city source: open, shared with named
partners, or internal), ``federation`` (the node's federation settings: its
identity, peers and the sharing of energy aggregates in deploy/federation.yaml),
``limits`` (the federation API's quotas) and ``topics`` (the node's declared
topics, partner templates expanded for the partners these name). Publish,
federation and the node's start-up read them here, below every stage.
"""
