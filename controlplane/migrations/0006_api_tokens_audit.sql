-- The REST API (`/api/v1`, docs/API.md): its tokens, the audit log of
-- changes, and the configuration sections the API changed. Portable SQL,
-- as 0001.

-- API tokens: only the SHA-256 of the token is kept (hex, lowercase).
CREATE TABLE api_tokens (
    name TEXT PRIMARY KEY NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    -- `read-only` or `admin`.
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- NULL until first used.
    last_used_at BIGINT
);

-- Every change through the API, and every refused write by a known token.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    -- The token's name (`cli` for the command line).
    who TEXT NOT NULL,
    -- `create`, `update`, `delete`, `kill`, `reload`, `revoke`.
    action TEXT NOT NULL,
    -- The resource collection, e.g. `delivery-groups`.
    resource TEXT NOT NULL,
    -- The key within it, empty for the collection.
    name TEXT NOT NULL,
    -- JSON, NULL when there was nothing.
    before_json TEXT,
    after_json TEXT,
    -- `ok` or the stable error code of the refusal.
    outcome TEXT NOT NULL
);

-- Configuration sections as the API left them: they win over the file.
CREATE TABLE config_overlay (
    section TEXT PRIMARY KEY NOT NULL,
    json TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
