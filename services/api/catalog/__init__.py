"""The DCAT-AP 3.0 catalogue of the datasets a caller may see (``GET /catalog``)."""
