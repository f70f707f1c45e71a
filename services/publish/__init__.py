"""publish: lands observations, aggregates and dead letters in ClickHouse,
re-publishes open and shared datasets on ``public.*`` topics, and serves the
warehouse to analysts (``citeplus sql``)."""
