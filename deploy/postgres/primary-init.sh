#!/bin/sh
# Run once by the postgis image when the primary's data directory is created: the role the replicas
# stream with (REPLICATION_USER / REPLICATION_PASSWORD) and its pg_hba.conf line.
set -eu
psql -v ON_ERROR_STOP=1 -v user="$REPLICATION_USER" -v password="$REPLICATION_PASSWORD" \
     --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE :"user" WITH REPLICATION LOGIN PASSWORD :'password';
SQL
echo "host replication $REPLICATION_USER all scram-sha-256" >> "$PGDATA/pg_hba.conf"
