-- Layers the agencies register (the core layers stay in layers/*.yml). Each row holds the catalog
-- entry as JSON, validated by the same models as the YAML files, its owner agency and its state.
-- A retired layer keeps its row and its history; it only leaves the catalog.
CREATE TABLE geocloud.registered_layers (
    id           text PRIMARY KEY,
    owner        text NOT NULL,          -- an agency code of agencies.yml
    state        text NOT NULL CHECK (state IN ('draft', 'live', 'pending_review', 'retired')),
    entry        jsonb NOT NULL,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_by   text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Every change of the registry, with the row before and after. Its newest id is the catalog
-- version: each server worker reads it with its live-version snapshot and re-reads the registry
-- when it moves, so a registered or retired layer reaches every worker without a restart.
CREATE TABLE geocloud.registry_events (
    id           bigserial PRIMARY KEY,
    layer        text NOT NULL,
    action       text NOT NULL,          -- register, update, retire
    operator     text NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    before       jsonb,
    after        jsonb
);
CREATE INDEX registry_events_layer ON geocloud.registry_events (layer, id DESC);
