-- The counters of a run that ended DONE or FAILED, as JSON (dth_model::RunCounters): nothing
-- changes its items until a retry of its dead items, which clears this. Pages and the API read
-- them instead of counting a finished run's items again (a million items take a second).
ALTER TABLE runs ADD COLUMN final_counters TEXT;
