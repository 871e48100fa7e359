-- Core schema: tenants, people, devices, raw events and dead letters.
-- Hot tables (events) use integer keys; names live in the dimension tables.

-- Turns a plain table into a time-series table, according to the storage mode chosen when the
-- database was first migrated (homeward_storage):
--  * timescaledb: a hypertable with one-day chunks and compression segmented by `segment_by`
--    (retention is a policy set at start-up from the configuration);
--  * native: a table partitioned by range on `time_column`, whose first partition is the
--    DEFAULT one, so that a row of any date is stored; the maintenance task adds daily
--    partitions ahead of time and drops expired ones.
-- Either way the table keeps its name and columns, so queries do not care.
CREATE FUNCTION homeward_timeseries(tbl text, time_column text, segment_by text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    storage text;
    idx record;
BEGIN
    SELECT mode INTO STRICT storage FROM homeward_storage;
    IF storage = 'timescaledb' THEN
        PERFORM create_hypertable(tbl::regclass, by_range(time_column::name, INTERVAL '1 day'));
        EXECUTE format(
            'ALTER TABLE %I SET (timescaledb.compress, timescaledb.compress_segmentby = %L, timescaledb.compress_orderby = %L)',
            tbl, segment_by, time_column || ' DESC');
        PERFORM add_compression_policy(tbl::regclass, INTERVAL '7 days');
    ELSE
        EXECUTE format('ALTER TABLE %I RENAME TO %I', tbl, tbl || '_default');
        -- Free the index names for the partitioned parent.
        FOR idx IN
            SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE i.indrelid = (tbl || '_default')::regclass
        LOOP
            EXECUTE format('ALTER INDEX %I RENAME TO %I', idx.relname, 'default_' || idx.relname);
        END LOOP;
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING ALL) PARTITION BY RANGE (%I)',
            tbl, tbl || '_default', time_column);
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I DEFAULT', tbl, tbl || '_default');
    END IF;
    INSERT INTO homeward_timeseries_tables (table_name, time_column) VALUES (tbl, time_column);
END
$$;

CREATE TABLE homeward_timeseries_tables (
    table_name  text PRIMARY KEY,
    time_column text NOT NULL
);

CREATE TABLE organisations (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    kind        text NOT NULL CHECK (kind IN ('provider', 'commissioner')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A commissioner (council) contracts a provider. Payment terms are data (issue: outcomes).
CREATE TABLE contracts (
    id              integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    commissioner_id integer NOT NULL REFERENCES organisations (id),
    provider_id     integer NOT NULL REFERENCES organisations (id),
    reference       text NOT NULL CHECK (length(reference) BETWEEN 1 AND 100),
    starts_on       date NOT NULL,
    ends_on         date,
    terms           jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (commissioner_id, reference),
    CHECK (ends_on IS NULL OR ends_on >= starts_on),
    CHECK (commissioner_id <> provider_id)
);
CREATE INDEX contracts_provider_idx ON contracts (provider_id);

CREATE TABLE users (
    id              integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id integer NOT NULL REFERENCES organisations (id),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role            text NOT NULL CHECK (role IN
                        ('provider_admin', 'provider_staff', 'responder', 'commissioner', 'auditor')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    disabled_at     timestamptz,
    UNIQUE (organisation_id, name)
);

-- Only the SHA-256 of a token is stored; the token itself is shown once, when created.
CREATE TABLE api_tokens (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     integer NOT NULL REFERENCES users (id),
    token_hash  bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    label       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX api_tokens_user_idx ON api_tokens (user_id);

-- People receiving care. Commissioners see `pseudonym`, never the name or reference.
CREATE TABLE people (
    id                integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id   integer NOT NULL REFERENCES organisations (id),
    external_ref      text NOT NULL CHECK (length(external_ref) BETWEEN 1 AND 100),
    pseudonym         text NOT NULL UNIQUE
                      DEFAULT ('P' || substr(replace(gen_random_uuid()::text, '-', ''), 1, 12)),
    display_name      text,
    date_of_birth     date,
    home_lat          double precision CHECK (home_lat BETWEEN -90 AND 90),
    home_lon          double precision CHECK (home_lon BETWEEN -180 AND 180),
    geofence_radius_m real CHECK (geofence_radius_m > 0),
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organisation_id, external_ref),
    CHECK ((home_lat IS NULL) = (home_lon IS NULL))
);

CREATE TABLE workers (
    id              integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id integer NOT NULL REFERENCES organisations (id),
    external_ref    text NOT NULL CHECK (length(external_ref) BETWEEN 1 AND 100),
    display_name    text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organisation_id, external_ref)
);

-- Devices: telecare hubs, pendants and sensors, and care workers' phones. `uid` is the MQTT
-- user name and client id; only the SHA-256 of its secret is stored.
CREATE TABLE devices (
    id              integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id integer NOT NULL REFERENCES organisations (id),
    uid             text NOT NULL UNIQUE CHECK (uid ~ '^[A-Za-z0-9_-]{1,64}$'),
    kind            text NOT NULL CHECK (kind IN ('hub', 'pendant', 'fall_detector', 'sensor', 'phone')),
    person_id       integer REFERENCES people (id),
    worker_id       integer REFERENCES workers (id),
    secret_hash     bytea NOT NULL CHECK (length(secret_hash) = 32),
    created_at      timestamptz NOT NULL DEFAULT now(),
    disabled_at     timestamptz
);
CREATE INDEX devices_organisation_idx ON devices (organisation_id);

-- Raw events: the source of truth, append-only, never updated. (device, seq) identifies an
-- event; the device's time is part of the key because time-series storage requires the
-- partitioning column in every unique key, and a device resends an event byte for byte.
CREATE TABLE events (
    device_id   integer NOT NULL,
    seq         bigint NOT NULL CHECK (seq > 0),
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    kind        smallint NOT NULL,
    sensor      integer,
    late        boolean NOT NULL DEFAULT false,
    data        jsonb,
    PRIMARY KEY (device_id, seq, occurred_at)
);
SELECT homeward_timeseries('events', 'occurred_at', 'device_id');

-- Input that could not be decoded or failed validation: kept with its raw bytes and the reason,
-- never silently dropped.
CREATE TABLE dead_letters (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at     timestamptz NOT NULL DEFAULT now(),
    organisation_id integer REFERENCES organisations (id),
    device_id       integer REFERENCES devices (id),
    device_uid      text,
    source          text NOT NULL CHECK (source IN ('mqtt', 'http')),
    topic           text,
    payload         bytea NOT NULL,
    reason_code     text NOT NULL,
    reason          text NOT NULL
);
CREATE INDEX dead_letters_organisation_idx ON dead_letters (organisation_id, id DESC);
