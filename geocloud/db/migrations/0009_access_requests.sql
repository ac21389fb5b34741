-- Access requests: a principal of an agency asks for a restricted layer it cannot read and says why;
-- the owning agency's editors or the GIS office's admins approve or reject it, with a reason.
CREATE TABLE geocloud.access_requests (
    id               bigserial PRIMARY KEY,
    layer            text NOT NULL,
    agency           text NOT NULL,          -- the requester's agency and role: what an approval grants
    role             text NOT NULL,
    principal        text NOT NULL,          -- the person or service who asked (their requests are "mine")
    reason           text NOT NULL,
    state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'approved', 'rejected')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    decided_by       text,
    decided_at       timestamptz,
    decision_reason  text,
    expires_at       timestamptz             -- of the grant an approval made; NULL: no expiry
);
CREATE INDEX access_requests_layer ON geocloud.access_requests (layer, state);
CREATE UNIQUE INDEX access_requests_one_pending ON geocloud.access_requests (layer, agency, role, principal)
    WHERE state = 'pending';

-- Grants made by approving a request. They join the catalog's grants (layers/*.yml, the registry's
-- entries) as the same model, so ``access.policy.can_read`` evaluates both alike, expiry included:
-- a grant past ``expires_at`` stops working on every surface at that moment, without a restart.
-- Adding one also adds a ``registry_events`` row (action 'grant'): every worker re-reads the catalog.
CREATE TABLE geocloud.layer_grants (
    id           bigserial PRIMARY KEY,
    layer        text NOT NULL,
    agency       text NOT NULL,
    roles        text[] NOT NULL,
    expires_at   timestamptz,
    request_id   bigint REFERENCES geocloud.access_requests (id),
    granted_by   text NOT NULL,
    granted_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX layer_grants_layer ON geocloud.layer_grants (layer);
