-- Credentials sent in a query string (?api_key=..., ?token=...) were recorded whole in the audit
-- trail (detail.query). Replace them as geocloud.access.redact does for new records: the value of
-- every credential parameter, then anything shaped like a key (its public id is kept), a token
-- or a JWT, wherever it sits in a record's details.
UPDATE geocloud.audit
SET detail = jsonb_set(detail, '{query}', to_jsonb(regexp_replace(detail->>'query',
        '(^|[&;])((api(_|%5f)?key|token|access(_|%5f)token)=)[^&;]*', '\1\2REDACTED', 'gi')))
WHERE jsonb_typeof(detail->'query') = 'string'
  AND detail->>'query' ~* '(^|[&;])(api(_|%5f)?key|token|access(_|%5f)token)=';

UPDATE geocloud.audit
SET detail = regexp_replace(regexp_replace(regexp_replace(detail::text,
        'gck_([A-Za-z0-9]{12})_[A-Za-z0-9_-]{43}', 'gck_\1_REDACTED', 'g'),
        'gct_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+', 'gct_REDACTED', 'g'),
        'eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*', 'REDACTED', 'g')::jsonb
WHERE detail::text ~ '(gck_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{43}|gct_[A-Za-z0-9_-]+\.|eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.)';
