-- Visits (electronic visit verification): what the home offers for verification, area
-- policies, the schedule, visits derived from check-ins and check-outs, office adjustments,
-- missed-visit alerts, and the derivation's checkpoint. See docs/visits.md.

-- How a home proves a visit: its tag (NFC or QR, fixed in the home), its landline, and whether
-- a fix outside the geofence is refused or only flagged (per person, else per area).
ALTER TABLE people
    ADD COLUMN area            text CHECK (area IS NULL OR length(area) BETWEEN 1 AND 100),
    ADD COLUMN home_tag        text CHECK (home_tag IS NULL OR home_tag ~ '^[A-Za-z0-9._:+-]{1,64}$'),
    ADD COLUMN home_phone      text CHECK (home_phone IS NULL OR home_phone ~ '^[A-Za-z0-9._:+-]{1,64}$'),
    ADD COLUMN geofence_policy text CHECK (geofence_policy IN ('reject', 'warn'));
CREATE UNIQUE INDEX people_home_tag_idx ON people (organisation_id, home_tag) WHERE home_tag IS NOT NULL;
CREATE INDEX people_home_phone_idx ON people (organisation_id, home_phone) WHERE home_phone IS NOT NULL;

CREATE TABLE evv_area_policies (
    organisation_id integer NOT NULL REFERENCES organisations (id),
    area            text NOT NULL CHECK (length(area) BETWEEN 1 AND 100),
    geofence_policy text NOT NULL CHECK (geofence_policy IN ('reject', 'warn')),
    PRIMARY KEY (organisation_id, area)
);

-- The schedule: reference data. Nothing here is billed: no minutes, no rate.
CREATE TABLE scheduled_visits (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id integer NOT NULL REFERENCES organisations (id),
    reference       text NOT NULL CHECK (reference ~ '^[A-Za-z0-9._:+-]{1,64}$'),
    person_id       integer NOT NULL REFERENCES people (id),
    worker_id       integer REFERENCES workers (id),
    window_start    timestamptz NOT NULL,
    window_end      timestamptz NOT NULL,
    service_type    text NOT NULL CHECK (length(service_type) BETWEEN 1 AND 100),
    outcomes        text[] NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    cancelled_at    timestamptz,
    cancelled_by    integer REFERENCES users (id),
    cancel_reason   text,
    UNIQUE (organisation_id, reference),
    CHECK (window_end > window_start)
);
CREATE INDEX scheduled_visits_person_idx ON scheduled_visits (person_id, window_start);
CREATE INDEX scheduled_visits_worker_idx ON scheduled_visits (worker_id, window_start);
CREATE INDEX scheduled_visits_start_idx ON scheduled_visits (window_start) WHERE cancelled_at IS NULL;

-- Check-ins and check-outs are raw events; these partial indexes keep the derivation's reads
-- (a device's checks; checks stored since the checkpoint) off the rest of the time series.
CREATE INDEX events_checks_device_idx ON events (device_id, occurred_at) WHERE kind IN (22, 23);
CREATE INDEX events_checks_received_idx ON events (received_at) WHERE kind IN (22, 23);

-- Corrections by the office. Append-only: raw events are never edited, a correction is a new
-- row that refers to the visit it corrects (by the visit's key, which names its first raw
-- event, so it survives a rebuild). A manual entry records a visit that has no raw event.
CREATE TABLE visit_adjustments (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id    integer NOT NULL REFERENCES organisations (id),
    kind               text NOT NULL CHECK (kind IN ('correction', 'manual_entry')),
    -- 'e:<device>:<seq>' for a correction; NULL for a manual entry (its visit is 'm:<id>').
    visit_key          text,
    scheduled_visit_id bigint REFERENCES scheduled_visits (id),
    adjusted_start     timestamptz,
    adjusted_end       timestamptz,
    reason_code        text NOT NULL CHECK (reason_code ~ '^[a-z_]{1,40}$'),
    memo               text CHECK (memo IS NULL OR length(memo) <= 2000),
    resolution_code    text CHECK (resolution_code IS NULL OR resolution_code ~ '^[a-z_]{1,40}$'),
    recorded_by        integer NOT NULL REFERENCES users (id),
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'correction') = (visit_key IS NOT NULL)),
    CHECK (kind <> 'manual_entry' OR (scheduled_visit_id IS NOT NULL
                                      AND adjusted_start IS NOT NULL AND adjusted_end IS NOT NULL)),
    -- A memo is required for "other" and for manual entries (DOMAIN.md, EVV).
    CHECK ((reason_code <> 'other' AND kind <> 'manual_entry') OR length(coalesce(memo, '')) > 0),
    CHECK (adjusted_end IS NULL OR adjusted_start IS NULL OR adjusted_end >= adjusted_start)
);
CREATE INDEX visit_adjustments_key_idx ON visit_adjustments (visit_key) WHERE visit_key IS NOT NULL;
CREATE INDEX visit_adjustments_org_idx ON visit_adjustments (organisation_id, id);

-- Derived: visits assembled from raw check events, reference data and adjustments. Rebuilt by
-- `homeward::evv::rebuild`; never edited by hand. Each check keeps its one location fix
-- (privacy: no tracking between check-in and check-out).
CREATE TABLE visits (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id    integer NOT NULL REFERENCES organisations (id),
    visit_key          text NOT NULL UNIQUE,
    device_id          integer REFERENCES devices (id),
    worker_id          integer REFERENCES workers (id),
    person_id          integer REFERENCES people (id),
    scheduled_visit_id bigint REFERENCES scheduled_visits (id),
    match_method       text NOT NULL,
    check_in           jsonb,
    check_out          jsonb,
    started_at         timestamptz,
    ended_at           timestamptz,
    -- A later check-in on the same phone came before any check-out.
    superseded         boolean NOT NULL DEFAULT false,
    adjusted_start     timestamptz,
    adjusted_end       timestamptz,
    adjustments        integer NOT NULL DEFAULT 0,
    resolution_code    text,
    CHECK (check_in IS NOT NULL OR check_out IS NOT NULL OR adjusted_start IS NOT NULL)
);
CREATE INDEX visits_org_start_idx ON visits (organisation_id, (coalesce(adjusted_start, started_at, ended_at)));
CREATE INDEX visits_scheduled_idx ON visits (scheduled_visit_id);
CREATE INDEX visits_device_idx ON visits (device_id);

-- Missed-visit alerts: one per scheduled visit at most (the primary key is what keeps several
-- instances from raising it twice), cleared when the visit starts or is cancelled.
CREATE TABLE missed_visit_alerts (
    scheduled_visit_id bigint PRIMARY KEY REFERENCES scheduled_visits (id),
    organisation_id    integer NOT NULL REFERENCES organisations (id),
    due_at             timestamptz NOT NULL,
    raised_at          timestamptz NOT NULL,
    cleared_at         timestamptz,
    cleared_reason     text CHECK (cleared_reason IN ('visit_started', 'cancelled'))
);
CREATE INDEX missed_visit_alerts_open_idx ON missed_visit_alerts (organisation_id) WHERE cleared_at IS NULL;

-- How far the derivation has got (received_at of the newest check event derived), so that a
-- restart catches up on events stored while it was down.
CREATE TABLE evv_checkpoint (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    received_at timestamptz NOT NULL
);
