"""PLACEHOLDER package, replaced by the NGSI-LD part at merge."""
