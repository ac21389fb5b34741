-- The ETL's shrink guard: what it objected to in a run (features removed, geometry type, extent)
-- and whether the operator forced the publish anyway. A run the guard stopped ends 'refused'.

ALTER TABLE geocloud.etl_runs ADD COLUMN guard jsonb NOT NULL DEFAULT '{}';
ALTER TABLE geocloud.etl_runs DROP CONSTRAINT etl_runs_status_check;
ALTER TABLE geocloud.etl_runs ADD CONSTRAINT etl_runs_status_check
    CHECK (status IN ('running', 'published', 'planned', 'unchanged', 'failed', 'interrupted', 'refused'));
