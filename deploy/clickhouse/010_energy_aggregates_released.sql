-- Released energy aggregates (energy.aggregates.released.v2): each window once,
-- when its UTC day closed, past statistical secrecy. The only energy aggregates
-- partners see (federation API, public.energy.aggregates.v2); energy_aggregates
-- keeps the provisional upserts for the city's own staff.
-- One record per window ever: ReplacingMergeTree only folds a record landed twice.
CREATE TABLE IF NOT EXISTS energy_aggregates_released
(
    city                LowCardinality(String),
    zone                LowCardinality(String),
    carrier             LowCardinality(String),
    sector              LowCardinality(String),
    granularity         LowCardinality(String),
    window_start        DateTime64(3, 'UTC'),
    window_end          DateTime64(3, 'UTC'),
    energy_kwh          Nullable(Float64),
    meter_count         Nullable(UInt32),
    peak_kw             Nullable(Float64),
    suppressed          Bool,
    suppression_reason  LowCardinality(Nullable(String)),
    closed_by           LowCardinality(String),
    released_at         DateTime64(3, 'UTC'),
    _topic              LowCardinality(String),
    _partition          UInt16,
    _offset             UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (city, carrier, sector, granularity, zone, window_start)
SETTINGS non_replicated_deduplication_window = 10000;
