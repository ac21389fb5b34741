#!/bin/sh
# A streaming replica of PRIMARY_HOST. On first start (an empty data directory) it copies the primary
# with pg_basebackup -R, which writes primary_conninfo and standby.signal; then it runs the postgis
# image's own entrypoint, which finds the data directory made and starts PostgreSQL as a hot standby.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA" && chown postgres "$PGDATA" && chmod 700 "$PGDATA"
    until pg_isready -h "$PRIMARY_HOST" -U "$REPLICATION_USER" -q; do sleep 1; done
    PGPASSWORD="$REPLICATION_PASSWORD" gosu postgres \
        pg_basebackup -h "$PRIMARY_HOST" -U "$REPLICATION_USER" -D "$PGDATA" -R -X stream --checkpoint=fast
fi
exec docker-entrypoint.sh postgres
