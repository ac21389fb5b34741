"""API keys at the database level: slow hashes, and no timing signal about which key ids exist."""

import time

import psycopg

from geocloud.access import keys


def _agency(conn):
    conn.execute("INSERT INTO geocloud.agencies (code, name_zh, name_en) VALUES ('TCG-X', '測試局', 'Test Bureau')")


def test_unknown_ids_cost_the_same_work_as_wrong_secrets(database):
    with psycopg.connect(database, autocommit=True) as conn:
        _agency(conn)
        good = keys.create(conn, "TCG-X", "tester", "analyst", None, None)
        assert keys.verify(conn, good).agency == "TCG-X"
        wrong = good[:-5] + ("AAAAA" if not good.endswith("AAAAA") else "BBBBB")
        unknown = "gck_000000000000_" + good.split("_", 2)[2]

        def timed(key):
            start = time.perf_counter()
            assert keys.verify(conn, key) is None
            return time.perf_counter() - start
        t_wrong = timed(wrong)
        t_unknown = timed(unknown)
        t_garbage = timed("not-a-key-at-all-" + "x" * 30)
    # every refusal runs scrypt (tens of milliseconds); none is measurably cheaper than another
    assert min(t_wrong, t_unknown, t_garbage) > 0.01
    assert max(t_wrong, t_unknown, t_garbage) < 4 * min(t_wrong, t_unknown, t_garbage)


def test_only_a_slow_hash_is_stored(database):
    with psycopg.connect(database, autocommit=True) as conn:
        _agency(conn)
        key = keys.create(conn, "TCG-X", "tester", "analyst", ["roads"], keys.parse_expiry("2h"))
        salt, digest, layers = conn.execute("SELECT salt, hash, layers FROM geocloud.api_keys").fetchone()
    secret = key.split("_", 2)[2]
    assert secret.encode() not in bytes(digest) and bytes(digest) == keys._hash(secret, bytes(salt))
    assert layers == ["roads"]


def test_a_remembered_key_is_rechecked_for_revocation_without_scrypt(database, monkeypatch):
    hashed = []
    real_hash = keys._hash
    monkeypatch.setattr(keys, "_hash", lambda *a: hashed.append(a) or real_hash(*a))  # counts, still hashes
    with psycopg.connect(database, autocommit=True) as conn:
        _agency(conn)
        key = keys.create(conn, "TCG-X", "tester", "analyst", None, None)
        assert keys.verify(conn, key) is not None
        for fingerprint, (_, principal) in list(keys._cache.items()):  # the remembered entry ages out
            keys._cache[fingerprint] = (time.monotonic() - keys.CACHE_SECONDS - 1, principal)
        assert keys.cached(key) is keys.MISS
        hashed.clear()
        assert keys.verify(conn, key).agency == "TCG-X"
        assert hashed == []  # the key's state was re-read; scrypt did not run again
        keys.revoke(conn, keys.KEY.match(key).group(1))
        for fingerprint, (_, principal) in list(keys._cache.items()):
            keys._cache[fingerprint] = (time.monotonic() - keys.CACHE_SECONDS - 1, principal)
        assert keys.verify(conn, key) is None


def test_a_key_cannot_be_created_already_expired(database):
    from conftest import geocloud_cli

    with psycopg.connect(database, autocommit=True) as conn:
        _agency(conn)
    env = {"GEOCLOUD_DATABASE_URL": database}
    done = geocloud_cli("keys", "create", "--agency", "TCG-X", "--role", "analyst", "--expires", "2020-01-31", env=env)
    assert done.returncode == 3 and "gck_" not in done.stdout
    assert "--expires" in done.stderr and "2020-01-31" in done.stderr and "in the past" in done.stderr
    assert "future date" in done.stderr
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM geocloud.api_keys").fetchone()[0] == 0
    future = geocloud_cli("keys", "create", "--agency", "TCG-X", "--role", "analyst", "--expires", "2h", env=env)
    assert future.returncode == 0 and future.stdout.strip().splitlines()[-1].startswith("gck_")
