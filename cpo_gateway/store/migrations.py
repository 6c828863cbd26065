"""Numbered schema migrations, applied in order at start, each in its own transaction."""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: the initial schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

    CREATE TABLE chargers (
        id TEXT PRIMARY KEY,
        password_hash TEXT,
        vendor TEXT, model TEXT, serial TEXT, firmware TEXT,
        boot_status TEXT, booted_at TEXT, last_seen REAL,
        local_list_version INTEGER NOT NULL DEFAULT 0,
        ocpp_list_version INTEGER NOT NULL DEFAULT 0,
        local_list_supported INTEGER NOT NULL DEFAULT 1
    );

    CREATE TABLE whitelist (
        partner TEXT NOT NULL,
        uid TEXT NOT NULL,
        PRIMARY KEY (partner, uid)
    ) WITHOUT ROWID;
    CREATE INDEX whitelist_uid ON whitelist (uid);

    CREATE TABLE whitelist_meta (
        partner TEXT PRIMARY KEY,
        count INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    );

    CREATE TABLE transactions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        charge_point TEXT NOT NULL,
        connector INTEGER NOT NULL,
        id_tag TEXT,
        start_key TEXT UNIQUE,
        stop_key TEXT UNIQUE,
        reported_id INTEGER,
        started_at TEXT,
        meter_start_wh REAL,
        stopped_at TEXT,
        meter_stop_wh REAL,
        stop_reason TEXT,
        first_wh REAL, first_wh_at TEXT,
        last_wh REAL, last_wh_at TEXT,
        charge_start_at TEXT, charge_stop_at TEXT,
        session_id TEXT NOT NULL UNIQUE
    );
    CREATE INDEX transactions_open ON transactions (charge_point, connector)
        WHERE stopped_at IS NULL;

    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        evse_id TEXT,
        charge_point TEXT NOT NULL,
        connector INTEGER NOT NULL,
        emp TEXT,
        origin TEXT NOT NULL,
        user_kind TEXT,
        user_id TEXT,
        id_tag TEXT,
        auth_status TEXT,
        auth_path TEXT,
        state TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at REAL,
        transaction_id INTEGER UNIQUE REFERENCES transactions (id),
        detail TEXT
    );
    CREATE INDEX sessions_pending ON sessions (charge_point, connector) WHERE state = 'pending';
    CREATE INDEX sessions_evse ON sessions (evse_id, state);

    CREATE TABLE id_tags (
        evco_id TEXT PRIMARY KEY,
        id_tag TEXT NOT NULL UNIQUE
    );

    CREATE TABLE connector_status (
        charge_point TEXT NOT NULL,
        connector INTEGER NOT NULL,
        state TEXT,
        error_code TEXT,
        reported_at TEXT,
        PRIMARY KEY (charge_point, connector)
    );

    CREATE TABLE evse_status (
        evse_id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        changed_at REAL NOT NULL
    );

    CREATE TABLE stations_posted (
        emp TEXT NOT NULL,
        station_id TEXT NOT NULL,
        hash TEXT NOT NULL,
        payload TEXT NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        queued_at REAL NOT NULL,
        posted_at REAL,
        PRIMARY KEY (emp, station_id)
    );

    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        emp TEXT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        next_at REAL NOT NULL,
        last_error TEXT,
        done_at REAL
    );
    CREATE UNIQUE INDEX outbox_coalesce ON outbox (emp, kind, key)
        WHERE state = 'pending' AND kind = 'connector-post-status';
    CREATE INDEX outbox_due ON outbox (state, next_at);
    CREATE INDEX outbox_key ON outbox (emp, kind, key);
    """,
    # 2: at most one open remote start per EVSE (older duplicates failed first); failed
    # remote starts found by expiry, so a late StartTransaction is recognised after a restart;
    # open sessions found by connector (the claim looks there inside its write transaction)
    """
    UPDATE sessions
        SET state = 'failed',
            detail = 'failed at upgrade: another open session held the EVSE (one per EVSE)'
        WHERE id IN (
            SELECT id FROM (
                SELECT id, ROW_NUMBER() OVER (
                    PARTITION BY evse_id
                    ORDER BY state = 'active' DESC, created_at DESC, rowid DESC
                ) AS rank
                FROM sessions
                WHERE origin = 'remote' AND state IN ('pending', 'active')
                    AND evse_id IS NOT NULL
            ) WHERE rank > 1
        );
    CREATE UNIQUE INDEX sessions_one_remote_claim ON sessions (evse_id)
        WHERE origin = 'remote' AND state IN ('pending', 'active');
    CREATE INDEX sessions_failed_remote ON sessions (expires_at)
        WHERE origin = 'remote' AND state = 'failed';
    CREATE INDEX sessions_open_place ON sessions (charge_point, connector, created_at)
        WHERE state IN ('pending', 'active');
    """,
    # 3: statuses a charger reported that were not applied (their own timestamps order
    # them), and the trusted timestamp of the status a connector's state came from
    """
    CREATE TABLE connector_status_ignored (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        charge_point TEXT NOT NULL,
        connector INTEGER NOT NULL,
        state TEXT,
        error_code TEXT,
        reported_at TEXT,
        received_at REAL NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE INDEX connector_status_ignored_received ON connector_status_ignored (received_at);
    ALTER TABLE connector_status ADD COLUMN trusted_at REAL;
    """,
    # 4: per-charger outcome of local-list pushes and their retry back-off
    """
    ALTER TABLE chargers ADD COLUMN local_list_result TEXT;
    ALTER TABLE chargers ADD COLUMN local_list_detail TEXT;
    ALTER TABLE chargers ADD COLUMN local_list_failures INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE chargers ADD COLUMN local_list_failed_version INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE chargers ADD COLUMN local_list_next_at REAL;
    ALTER TABLE chargers ADD COLUMN local_list_tried_at REAL;
    """,
    # 5: held CDRs are counted on every /metrics scrape: find them without a table scan
    """
    CREATE INDEX sessions_review ON sessions (created_at) WHERE state = 'needs_review';
    """,
    # 6: whether each charger is connected, as the running gateway last recorded it
    # (last_seen: when it connected or disconnected)
    """
    ALTER TABLE chargers ADD COLUMN connected INTEGER NOT NULL DEFAULT 0;
    """,
    # 7: transactions a charger names itself (its key, unique per charger), and the numbered
    # reports it sent about them, one row per (charger, key, sequence): a report resent is
    # the row already there, and the sequence orders them whatever order they came in
    """
    ALTER TABLE transactions ADD COLUMN charger_key TEXT;
    CREATE UNIQUE INDEX transactions_charger_key ON transactions (charge_point, charger_key)
        WHERE charger_key IS NOT NULL;
    CREATE TABLE transaction_steps (
        charge_point TEXT NOT NULL,
        charger_key TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        kind TEXT NOT NULL,
        trigger TEXT NOT NULL,
        reason TEXT,
        remote_id INTEGER,
        queued INTEGER NOT NULL DEFAULT 0,
        happened_at TEXT NOT NULL,
        received_at REAL NOT NULL,
        PRIMARY KEY (charge_point, charger_key, sequence)
    ) WITHOUT ROWID;
    """,
    # 8: security events chargers report (SecurityEventNotification), and the certificates
    # signed for them (SignCertificate) with the charger's answer to CertificateSigned.
    """
    CREATE TABLE security_events (
        id INTEGER PRIMARY KEY,
        charge_point TEXT NOT NULL,
        type TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        tech_info TEXT,
        received_at REAL NOT NULL
    );
    CREATE INDEX security_events_by_charger ON security_events (charge_point, id);
    CREATE TABLE issued_certificates (
        serial TEXT PRIMARY KEY,
        charge_point TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        not_after TEXT NOT NULL,
        status TEXT NOT NULL,
        issued_at REAL NOT NULL
    );
    CREATE INDEX issued_certificates_by_charger ON issued_certificates (charge_point, issued_at);
    """,
    # 9: the number a remote start is known by at its charger (2.0.1 remoteStartId), kept on
    # the session, so a start begun after a reconnect or a restart still finds it
    """
    ALTER TABLE sessions ADD COLUMN remote_ref INTEGER;
    CREATE UNIQUE INDEX sessions_remote_ref ON sessions (charge_point, remote_ref)
        WHERE remote_ref IS NOT NULL;
    """,
    # 10: no schema change (a 2.0.1 Ended before its Started needed none); kept so that the
    # numbers after it stay those already applied
    "SELECT 1;",
    # 11: the outbox's kinds are the core's own names (bridge/owed.py), not one partner
    # protocol's call names; pending rows keep their place (same ids, same order) and the
    # coalescing index covers session updates too. Idempotent: run again, it changes nothing.
    # One pass over the table, its kind indexes rebuilt after it rather than updated row by
    # row: 1M rows take 10 s this way, 29 s as three UPDATEs that keep the indexes
    # (`scripts/bench --scenario upgrade`, 2 shared CPUs).
    """
    DROP INDEX IF EXISTS outbox_coalesce;
    DROP INDEX IF EXISTS outbox_key;
    UPDATE outbox SET kind = CASE kind
            WHEN 'station-post' THEN 'station'
            WHEN 'connector-post-status' THEN 'evse-status'
            WHEN 'session-post' THEN 'cdr'
        END
        WHERE kind IN ('station-post', 'connector-post-status', 'session-post');
    CREATE INDEX outbox_key ON outbox (emp, kind, key);
    CREATE UNIQUE INDEX outbox_coalesce ON outbox (emp, kind, key)
        WHERE state = 'pending' AND kind IN ('evse-status', 'session-update');
    """,
    # 12: credentials links with roaming partners that exchange tokens in a handshake
    # (bridge/links.py): the tokens each side presents, where the partner starts, what the
    # handshake learned; the partner's token and our one-time invitation found by digest
    """
    CREATE TABLE partner_links (
        partner TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        token_in TEXT,
        token_in_digest TEXT,
        token_out TEXT,
        peer_url TEXT,
        details TEXT NOT NULL DEFAULT '{}',
        token_a_digest TEXT,
        registered_at REAL,
        updated_at REAL NOT NULL,
        last_error TEXT
    );
    CREATE UNIQUE INDEX partner_links_token_in ON partner_links (token_in_digest)
        WHERE token_in_digest IS NOT NULL;
    CREATE UNIQUE INDEX partner_links_token_a ON partner_links (token_a_digest)
        WHERE token_a_digest IS NOT NULL;
    """,
    # 13: partners' tokens. A full list from a partner is received into a new generation
    # while the one in force still answers; finishing it moves `generation` in one commit,
    # so a list interrupted half way never replaces anything (rows of generations neither
    # in force nor being received are swept in batches). A uid is a CiString: compared
    # without case, kept as first given.
    """
    CREATE TABLE tokens (
        id INTEGER PRIMARY KEY,
        partner TEXT NOT NULL,
        generation INTEGER NOT NULL,
        country_code TEXT NOT NULL,
        party_id TEXT NOT NULL,
        uid TEXT NOT NULL COLLATE NOCASE,
        type TEXT NOT NULL,
        card_uid TEXT,
        valid INTEGER NOT NULL,
        policy TEXT NOT NULL,
        contract_id TEXT NOT NULL,
        group_id TEXT,
        last_updated TEXT NOT NULL,
        extra TEXT NOT NULL
    );
    CREATE UNIQUE INDEX tokens_key
        ON tokens (partner, generation, country_code, party_id, uid, type);
    CREATE INDEX tokens_card ON tokens (card_uid) WHERE card_uid IS NOT NULL;
    CREATE TABLE token_lists (
        partner TEXT PRIMARY KEY,
        generation INTEGER NOT NULL,
        staging INTEGER,
        count INTEGER NOT NULL DEFAULT 0,
        updated_at TEXT
    );
    """,
    # 14: reservations partners asked for: the charger's number for each (`id`, an integer
    # as OCPP wants) beside the partner's own id (`ref`), one per partner and ref (a second
    # ReserveNow with the same ref replaces the first and keeps its number)
    """
    CREATE TABLE reservations (
        id INTEGER PRIMARY KEY,
        emp TEXT NOT NULL,
        ref TEXT NOT NULL,
        charge_point TEXT NOT NULL,
        connector INTEGER NOT NULL,
        evse_id TEXT,
        expires_at TEXT NOT NULL,
        id_tag TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        UNIQUE (emp, ref)
    );
    """,
    # 15: the tariffs queued to each partner (digest of what was queued, or its removal),
    # so that a tariff is queued again only when the stations file changes it
    """
    CREATE TABLE tariffs_queued (
        emp TEXT NOT NULL,
        tariff_id TEXT NOT NULL,
        hash TEXT NOT NULL,
        deleted INTEGER NOT NULL,
        queued_at REAL NOT NULL,
        PRIMARY KEY (emp, tariff_id)
    );
    """,
    # 16: the first and last signed meter reading of each transaction (JSON: the reading and
    # the charger's timestamp of it), for the CDR
    """
    ALTER TABLE transactions ADD COLUMN signed_start TEXT;
    ALTER TABLE transactions ADD COLUMN signed_end TEXT;
    """,
    # 17: the cluster's nodes (their heartbeat), which node holds which charger (the newest
    # connection; `epoch` tells it from an older one), and the bodies of messages between
    # nodes too large for a notification. SQLite holds them empty: a cluster needs PostgreSQL.
    """
    CREATE TABLE cluster_nodes (
        node_id TEXT PRIMARY KEY,
        started_at TEXT NOT NULL,
        seen_at TEXT NOT NULL
    );
    CREATE TABLE charger_nodes (
        charge_point_id TEXT PRIMARY KEY,
        node_id TEXT NOT NULL,
        connected_at TEXT NOT NULL,
        epoch INTEGER NOT NULL
    );
    CREATE INDEX charger_nodes_node ON charger_nodes (node_id);
    CREATE TABLE cluster_messages (
        id INTEGER PRIMARY KEY,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    """,
    # 18: outbox rows are handed out under a claim: the node delivering a row (claimed_by)
    # until when (claimed_until, epoch seconds; another node may take it over after that),
    # and the node whose expired claim the last claim took over (taken_from)
    """
    ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
    ALTER TABLE outbox ADD COLUMN claimed_until REAL;
    ALTER TABLE outbox ADD COLUMN taken_from TEXT;
    """,
)
