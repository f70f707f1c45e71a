"""The common API: one open HTTP API (NGSI-LD) to every city's shared data, read through
the federation API of this node and its peers, never from the warehouse."""
