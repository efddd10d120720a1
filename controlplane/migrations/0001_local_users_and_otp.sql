-- Local users, OTP devices and accepted TOTP steps.
--
-- Portable SQL: only TEXT and BIGINT columns, natural primary keys, no
-- AUTOINCREMENT/SERIAL, no BLOB/BYTEA, no dialect functions, so the same
-- file serves SQLite (the embedded store) and PostgreSQL (a fleet). Times are
-- Unix seconds. Queries bind with $1, $2, ... which both accept.

-- The local user directory (used when no LDAP directory is configured).
CREATE TABLE local_users (
    -- The login name, exactly as given (case-sensitive).
    name TEXT NOT NULL PRIMARY KEY,
    -- Argon2id PHC string: $argon2id$v=19$m=...,t=...,p=...$salt$hash
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- TOTP devices of users whose devices live in the store. Not tied to
-- local_users by a foreign key: the user may come from another directory.
CREATE TABLE otp_devices (
    user_name TEXT NOT NULL,
    name TEXT NOT NULL,
    -- The sealed secret: gh1.<base64url(nonce || ciphertext || tag)>,
    -- ChaCha20-Poly1305 under the OTP key, bound to (user, device).
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_name, name)
);

-- The highest TOTP time step accepted per (user, device): a code for this
-- step or an earlier one is refused (RFC 6238 section 5.2, replay).
CREATE TABLE otp_accepted_steps (
    user_name TEXT NOT NULL,
    device TEXT NOT NULL,
    step BIGINT NOT NULL,
    PRIMARY KEY (user_name, device)
);
