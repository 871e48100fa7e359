-- Credential lifecycle: tokens that expire, can be listed without being shown, and revoked;
-- users and devices that can be disabled; device secrets that can be rotated. Every revocation
-- (a token revoked, a user or device disabled, a device secret rotated) is also appended to
-- `credential_revocations`, which every running server polls so that live sessions (MQTT
-- connections, event streams) end within a second, whichever process made the change.

ALTER TABLE api_tokens
    -- The first characters of the token (`hw_` and 8 hex digits), to recognise it in a list.
    -- NULL for tokens created before this migration.
    ADD COLUMN prefix       text CHECK (prefix IS NULL OR length(prefix) <= 16),
    ADD COLUMN last_used_at timestamptz,
    -- A service token never expires; a user's token expires after `auth.token_ttl_days`.
    ADD COLUMN service      boolean NOT NULL DEFAULT false,
    ADD COLUMN revoked_by   integer REFERENCES users (id),
    -- The token a request used to issue this one over the API: revoking a token revokes every
    -- token issued with it (and with those), so a stolen token cannot leave offspring behind.
    ADD COLUMN issued_with  integer REFERENCES api_tokens (id);
CREATE INDEX api_tokens_issued_with_idx ON api_tokens (issued_with) WHERE issued_with IS NOT NULL;

-- Tokens made before tokens expired by default get the default lifetime from now.
UPDATE api_tokens SET expires_at = now() + interval '90 days'
 WHERE expires_at IS NULL AND revoked_at IS NULL;

ALTER TABLE devices
    ADD COLUMN secret_rotated_at timestamptz;

CREATE TABLE credential_revocations (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The statement's own clock, not its transaction's start, so a watcher reading rows by
    -- time sees them in about the order they committed.
    at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    token_id  integer REFERENCES api_tokens (id),
    user_id   integer REFERENCES users (id),
    device_id integer REFERENCES devices (id),
    -- disabled, revoked or rotated: what happened, for the operator reading the table.
    reason    text NOT NULL CHECK (reason IN ('token_revoked', 'user_disabled', 'device_disabled', 'device_secret_rotated')),
    CHECK (num_nonnulls(token_id, user_id, device_id) = 1)
);
CREATE INDEX credential_revocations_at_idx ON credential_revocations (at);
