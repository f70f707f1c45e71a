"""``citeplus simulate``: realistic, deterministic sample data for the five cities.

Each city sends its energy data the way real cities do, each in its own
transport (CSV with local times and decimal commas, NDJSON in Wh with epoch
times, Linky frames with cumulative index registers, Smart Data Models meter
entities, headerless CSV in UTC), plus air-quality and traffic observations in
the forms its city file declares. The same seed always gives the same bytes, so
a demo, a benchmark or a test can be replayed exactly.

Modules: ``loadcurve`` and ``ambient`` (pure models), ``timegrid`` (DST-safe
intervals), ``population`` (meters, zones, stations), ``tic`` and ``formats``
(rendering), ``generator`` (payloads), ``push`` / ``files`` (delivery), ``cli``.
"""
