"""NGSI-LD (ETSI GS CIM 009 V1.8.1) read side of the common API: parameters,
representations, errors and routes."""
