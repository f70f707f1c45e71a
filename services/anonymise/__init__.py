"""anonymise: applies each source's declared privacy policy to RawRecords.

Reads ``raw.v1``, writes ``anonymised.v1`` (identifiers pseudonymised with the
city's key of the record's epoch, quasi-identifiers generalised, free text and
undeclared fields removed, load curves coarsened when consent is not declared)
and one compact audit record per city source and batch on ``audit.v1``.

Modules, one job each: ``policy`` (the ``privacy:`` section, validated at
start), ``generalise`` (grid, bucket, band, prefix), ``safety_net``
(personal data hidden in kept values), ``coarsen`` (load curves to a coarser
step), ``transform`` (one record, pure), ``audit`` (counts of a batch),
``stage`` (the pipeline stage) and ``main`` (commands). The keyrings, epoch keys
and keyed pseudonyms live in :mod:`services.privacy`, shared with ingest.
"""
