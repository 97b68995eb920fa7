-- The central server's record of vouchers across venues (SQLite; rlm_sql with
-- driver rlm_sql_sqlite). One row per device a voucher was granted to, at any venue.
CREATE TABLE IF NOT EXISTS wifipos_devices (
    voucher    TEXT NOT NULL,    -- User-Name: KEYID:SERIAL
    mac        TEXT NOT NULL,    -- Calling-Station-Id: AA-BB-CC-DD-EE-FF
    venue      TEXT NOT NULL,    -- NAS-Identifier of the venue that asked first
    first_seen INTEGER NOT NULL, -- Unix seconds
    PRIMARY KEY (voucher, mac)
);
-- Vouchers revoked at HQ: refused at every venue from now on (and send each venue a
-- Disconnect-Request with the User-Name to end the devices already online).
CREATE TABLE IF NOT EXISTS wifipos_revoked (
    voucher TEXT PRIMARY KEY
);
-- Every accounting record once, however often it arrives: a router resends a record whose
-- answer it did not get (with a new Identifier and Acct-Delay-Time, RFC 5080), so the same
-- record can arrive twice; its venue, session, status and event time name it (an
-- Acct-Session-Id is unique per router only, RFC 2866: a phone roaming to another venue in
-- the same second has the same one there).
CREATE TABLE IF NOT EXISTS wifipos_accounting (
    session_id      TEXT NOT NULL,    -- Acct-Session-Id
    status          TEXT NOT NULL,    -- Start, Interim-Update, Stop
    event_time      INTEGER NOT NULL, -- Event-Timestamp (Unix seconds)
    voucher         TEXT NOT NULL,    -- User-Name
    mac             TEXT NOT NULL,    -- Calling-Station-Id
    venue           TEXT NOT NULL,    -- NAS-Identifier
    session_time    INTEGER,          -- Acct-Session-Time (s)
    input_octets    INTEGER,          -- from the device, Gigawords included
    output_octets   INTEGER,          -- to the device, Gigawords included
    terminate_cause TEXT,             -- Stop only
    received_at     INTEGER NOT NULL,
    PRIMARY KEY (venue, session_id, status, event_time)
);
