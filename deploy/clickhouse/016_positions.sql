-- Positions of observed entities (Observation.position: a station's place, or the
-- centre of the grid cell a privacy policy generalised it to; never the exact place
-- of a person's device). Null where the source gives none. The common API's
-- entity queries read them (NGSI-LD location, georel near / within).
ALTER TABLE observations
    ADD COLUMN IF NOT EXISTS lat Nullable(Float64) AFTER zone,
    ADD COLUMN IF NOT EXISTS lon Nullable(Float64) AFTER lat;
