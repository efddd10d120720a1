-- Permanent desktop assignments the broker made on first use in private
-- delivery groups (assignments from the configuration are not stored).
-- Only an administrator removes a row. Portable SQL, as 0001.
CREATE TABLE broker_assignments (
    -- The desktop's worker name.
    desktop TEXT NOT NULL,
    -- The user, lowercase.
    user_name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (desktop, user_name)
);
