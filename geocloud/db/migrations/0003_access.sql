-- Agencies, API keys and the audit trail.

CREATE TABLE geocloud.agencies (
    code         text PRIMARY KEY,
    name_zh      text NOT NULL,
    name_en      text NOT NULL,
    city_agency  boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz
);

-- A key belongs to one principal (a person or a service) of one agency, with one role. Only a
-- slow hash (scrypt) of the secret is kept; the key id is public and indexes the lookup.
CREATE TABLE geocloud.api_keys (
    id           text PRIMARY KEY,
    agency       text NOT NULL REFERENCES geocloud.agencies (code),
    principal    text NOT NULL,
    role         text NOT NULL,
    layers       text[],                 -- NULL: every layer the agency and role may read
    read_only    boolean NOT NULL DEFAULT true,
    salt         bytea NOT NULL,
    hash         bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    rotated_to   text REFERENCES geocloud.api_keys (id),
    grace_until  timestamptz             -- a rotated key stays valid until then
);

CREATE TABLE geocloud.audit (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    action       text NOT NULL,          -- read, download, key-created, key-revoked, key-rotated, agency-added
    principal    text,
    agency       text,
    layer        text,
    surface      text,
    detail       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_at ON geocloud.audit (at DESC);
CREATE INDEX audit_layer ON geocloud.audit (layer, at DESC);

-- Values every worker and command must share: the token-signing key (created on first use) and the
-- last recorded access of each layer (to audit grant changes).
CREATE TABLE geocloud.secrets (
    name   text PRIMARY KEY,
    value  text NOT NULL
);

-- Request counts per client and minute, shared by every worker (each adds its counts in batches).
CREATE UNLOGGED TABLE geocloud.rate_counts (
    client  text NOT NULL,
    minute  bigint NOT NULL,
    count   integer NOT NULL,
    PRIMARY KEY (client, minute)
);
