-- Energy windows whose energy is partly spread from readings longer than the window
-- (an hourly reading over its quarters, a daily one over its hours): derived, not
-- measured, and their peak_kw is null (EnergyAggregate.derived). Rows landed before
-- read false.
ALTER TABLE energy_aggregates ADD COLUMN IF NOT EXISTS derived Bool DEFAULT false;
ALTER TABLE energy_aggregates_released ADD COLUMN IF NOT EXISTS derived Bool DEFAULT false;
