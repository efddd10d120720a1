-- Client internal IP (IIP) leases of the server-to-client pools
-- (controlplane/src/s2c). One row per leased address: active while the
-- user's access client is connected (released_at NULL), then sticky for
-- server_to_client.stickiness_days. Portable SQL, as 0001.
--
-- The primary key on the address makes it impossible to hand one IIP to two
-- users; the unique (user_name) makes a user hold at most one IIP.
CREATE TABLE iip_leases (
    -- The IPv4 address, dotted quad.
    iip TEXT NOT NULL PRIMARY KEY,
    -- The pool's name.
    pool TEXT NOT NULL,
    -- The user, lowercase.
    user_name TEXT NOT NULL UNIQUE,
    -- Unix seconds of the (latest) lease.
    leased_at BIGINT NOT NULL,
    -- Unix seconds of the release; NULL while active.
    released_at BIGINT
);
