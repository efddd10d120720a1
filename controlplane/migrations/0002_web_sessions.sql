-- Web sessions of the gateway's login flow (PROTOCOLS.md §7), kept in the
-- store so that a restart of the control plane does not log users out.
--
-- The session cookie (NSC_AAAC) is never stored: only the SHA-256 of its
-- value, so a copy of the database does not hand out live sessions.
-- Portable SQL as in 0001 (TEXT and BIGINT, Unix seconds).
CREATE TABLE web_sessions (
    -- Lowercase hex SHA-256 of the cookie value.
    token_hash TEXT NOT NULL PRIMARY KEY,
    -- The login name as the directory spells it.
    user_name TEXT NOT NULL,
    -- The name shown on the home page.
    display_name TEXT NOT NULL,
    -- The user's LDAP DN ('' for the local directory).
    dn TEXT NOT NULL,
    -- 'full', or 'enrol' (may only register an OTP device).
    scope TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);

CREATE INDEX web_sessions_last_seen ON web_sessions (last_seen);
