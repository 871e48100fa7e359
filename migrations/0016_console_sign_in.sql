-- People sign in to the console with an email address and a password; machines keep API
-- tokens. Only an argon2id hash of a password is stored, only a SHA-256 of a session token or
-- of a one-time password link (both carry 256 random bits, so a fast hash is enough for them).

ALTER TABLE users
    -- What a person signs in with; unique whatever its case. NULL: the user cannot sign in to
    -- the console (a machine's user, or one made before the console).
    ADD COLUMN email           text CHECK (email IS NULL OR (length(email) BETWEEN 3 AND 254
                                              AND position('@' IN email) > 1)),
    -- argon2id, as a PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`). NULL until
    -- the person sets one through a one-time link.
    ADD COLUMN password_hash   text CHECK (password_hash IS NULL OR password_hash LIKE '$argon2id$%'),
    ADD COLUMN password_set_at timestamptz;
CREATE UNIQUE INDEX users_email_key ON users (lower(email)) WHERE email IS NOT NULL;

-- A signed-in browser. The cookie holds the token; a session ends at `expires_at`
-- (`console.session_hours` after sign-in), after `console.session_idle_minutes` without a
-- request, at sign-out (the row is deleted), or when its user is disabled or sets a new
-- password.
CREATE TABLE console_sessions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      integer NOT NULL REFERENCES users (id),
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX console_sessions_user_idx ON console_sessions (user_id);
CREATE INDEX console_sessions_expires_idx ON console_sessions (expires_at);

-- One-time links to set a password, issued by an admin (command line or API). A link works
-- once, until `expires_at`; issuing another for the same user supersedes it.
CREATE TABLE password_links (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       integer NOT NULL REFERENCES users (id),
    token_hash    bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    -- The admin who issued it over the API; NULL from the command line.
    created_by    integer REFERENCES users (id),
    used_at       timestamptz,
    superseded_at timestamptz
);
CREATE INDEX password_links_user_idx ON password_links (user_id);

-- Failed sign-ins, for the back-off: one row per email address tried and per client address,
-- keyed by a SHA-256 of `user:<lower-case email>` or `address:<ip>` (so neither is stored as
-- typed). Rows go an hour after their last failure.
CREATE TABLE sign_in_failures (
    key            bytea PRIMARY KEY CHECK (length(key) = 32),
    failures       integer NOT NULL CHECK (failures > 0),
    last_failed_at timestamptz NOT NULL
);
CREATE INDEX sign_in_failures_last_idx ON sign_in_failures (last_failed_at);
