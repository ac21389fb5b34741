-- Schemas that separate what is live, what is being loaded, what is kept for rollback,
-- and the platform's own records.
CREATE EXTENSION IF NOT EXISTS postgis;

CREATE SCHEMA IF NOT EXISTS live;      -- published layer tables, one per vector layer: live.<layer>
CREATE SCHEMA IF NOT EXISTS staging;   -- tables being loaded by an ETL run: staging.<layer>__r<run>
CREATE SCHEMA IF NOT EXISTS history;   -- previous versions kept for rollback: history.<layer>__v<version>
CREATE SCHEMA IF NOT EXISTS geocloud;  -- catalog state, ETL runs, and later keys and audit
