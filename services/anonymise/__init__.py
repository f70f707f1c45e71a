"""anonymise: applies each source's declared privacy policy to RawRecords.

Reads ``raw.v1``, writes ``anonymised.v1`` (identifiers pseudonymised with the
city's key of the record's epoch, quasi-identifiers generalised, free text and
undeclared fields removed, load curves coarsened when consent is not declared)
and one compact audit record per city source and batch on ``audit.v1``.

Modules, one job each: ``policy`` (the ``privacy:`` section, validated at
start), ``keys`` (per-city keyrings and epoch keys), ``pseudonym`` (keyed
HMAC pseudonyms), ``generalise`` (grid, bucket, band, prefix), ``safety_net``
(personal data hidden in kept values), ``coarsen`` (load curves to a coarser
step), ``transform`` (one record, pure), ``audit`` (counts of a batch),
``stage`` (the pipeline stage) and ``main`` (commands).
"""
