-- Browser sign-in (the portal): sessions, the sign-in flows under way, and whose API keys are whose.

-- A signed-in browser. The cookie carries a random secret; only its SHA-256 is kept, so a copy of
-- this table signs nobody in. Any worker serves any session: nothing about it lives in memory.
CREATE TABLE geocloud.sessions (
    secret_hash  bytea PRIMARY KEY,
    id           text NOT NULL UNIQUE,        -- public: rate limits, the audit trail
    subject      text NOT NULL,               -- the SSO's `sub`, or `key:<id>` for a key's session
    name         text NOT NULL,
    agency       text NOT NULL REFERENCES geocloud.agencies (code),
    roles        text[] NOT NULL,
    key_id       text REFERENCES geocloud.api_keys (id),  -- a session opened with an API key
    csrf         text NOT NULL,               -- the token every form and cookie-authenticated write repeats
    created_at   timestamptz NOT NULL DEFAULT now(),
    seen_at      timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL         -- the absolute expiry; idle expiry counts from seen_at
);
CREATE INDEX sessions_expires ON geocloud.sessions (expires_at);

-- An OpenID Connect authorization under way: the state names it (hashed), the nonce and the PKCE
-- verifier wait here for the callback, which takes the row (once).
CREATE TABLE geocloud.signin_flows (
    state_hash   bytea PRIMARY KEY,
    nonce        text NOT NULL,
    verifier     text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Keys a person made on their account page belong to their SSO subject; last use is noted by the
-- rate limiter's batched writes (at most every few seconds a worker).
ALTER TABLE geocloud.api_keys ADD COLUMN subject text, ADD COLUMN last_used_at timestamptz;
CREATE INDEX api_keys_subject ON geocloud.api_keys (subject) WHERE subject IS NOT NULL;
