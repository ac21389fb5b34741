-- ETL runs and layer versions: the history and provenance of every update.

CREATE TABLE geocloud.etl_runs (
    id             bigserial PRIMARY KEY,
    pipeline       text NOT NULL,
    layers         text[] NOT NULL,
    source_path    text NOT NULL,
    source_sha256  text,
    operator       text NOT NULL,
    host           text NOT NULL,
    pid            integer NOT NULL,
    dry_run        boolean NOT NULL DEFAULT false,
    status         text NOT NULL DEFAULT 'running'
                   CHECK (status IN ('running', 'published', 'planned', 'unchanged', 'failed', 'interrupted')),
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    counts         jsonb NOT NULL DEFAULT '{}',
    timings        jsonb NOT NULL DEFAULT '{}',
    warnings       jsonb NOT NULL DEFAULT '[]',
    diff           jsonb NOT NULL DEFAULT '{}',
    quality        jsonb NOT NULL DEFAULT '{}',
    error          text
);
CREATE INDEX etl_runs_pipeline ON geocloud.etl_runs (pipeline, started_at DESC);

-- One row per published version of a layer. Exactly one version per layer is 'live'.
-- Vector versions live in live.<layer> (live) or history.<layer>__v<version> (history);
-- raster versions are COG folders under the data directory.
CREATE TABLE geocloud.layer_versions (
    layer          text NOT NULL,
    version        integer NOT NULL,
    run_id         bigint REFERENCES geocloud.etl_runs (id),
    state          text NOT NULL CHECK (state IN ('live', 'history', 'retired')),
    storage        text NOT NULL,
    feature_count  bigint,
    extent         geometry(Polygon, 4326),
    published_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (layer, version)
);
CREATE UNIQUE INDEX layer_versions_one_live ON geocloud.layer_versions (layer) WHERE state = 'live';

-- Every change of which version is live: publishes and rollbacks. Caches and publishing read
-- the changed area and the version from here.
CREATE TABLE geocloud.layer_events (
    id             bigserial PRIMARY KEY,
    layer          text NOT NULL,
    action         text NOT NULL CHECK (action IN ('publish', 'rollback')),
    from_version   integer,
    to_version     integer NOT NULL,
    run_id         bigint REFERENCES geocloud.etl_runs (id),
    operator       text NOT NULL,
    changed_extent geometry(Polygon, 4326),
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX layer_events_layer ON geocloud.layer_events (layer, at DESC);
