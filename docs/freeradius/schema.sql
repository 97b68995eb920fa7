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
