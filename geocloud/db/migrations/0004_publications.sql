-- What was pushed where: one row per layer and target (tgos, datagov), written only after the
-- target confirmed the push, so nothing half-pushed is ever recorded as pushed. A push is stale
-- when the layer's live version differs from the version pushed (ETL publish or rollback).

CREATE TABLE geocloud.publications (
    layer           text NOT NULL,
    target          text NOT NULL CHECK (target IN ('tgos', 'datagov')),
    identifier      text NOT NULL,
    version         integer NOT NULL,
    payload_sha256  text NOT NULL,
    pushed_at       timestamptz NOT NULL DEFAULT now(),
    pushed_by       text NOT NULL,
    quality_mark    text,
    PRIMARY KEY (layer, target)
);

-- Every attempt, successful or not, with the target's own words when it refused.
CREATE TABLE geocloud.publish_attempts (
    id              bigserial PRIMARY KEY,
    layer           text NOT NULL,
    target          text NOT NULL,
    identifier      text NOT NULL,
    version         integer,
    action          text NOT NULL,
    ok              boolean NOT NULL,
    message         text,
    operator        text NOT NULL,
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX publish_attempts_layer ON geocloud.publish_attempts (layer, target, at DESC);
