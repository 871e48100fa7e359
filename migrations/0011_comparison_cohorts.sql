-- Comparison cohorts: people not served (referred and waiting, or matched people not enrolled),
-- recorded by the commissioner, so that "avoided" is estimated against what happened to people
-- without the service at the same time (difference-in-differences), not against the served
-- people's own history alone. The paid party (the provider) neither records nor sees them.
--
-- Append-only like the outcome records: a member's details are versions (the newest version of
-- (cohort, reference) recorded by T is the member as known at T; a version with `withdrawn`
-- removes the member); events are never changed. Reports read them as known at their moment.

CREATE TABLE comparison_cohorts (
    id              integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    commissioner_id integer NOT NULL REFERENCES organisations (id),
    -- A cohort for one contract, or (NULL) for every report of the commissioner.
    contract_id     integer REFERENCES contracts (id),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- How members were chosen (waiting list, matching criteria): shown beside the estimate.
    selection       text NOT NULL CHECK (length(selection) BETWEEN 1 AND 2000),
    recorded_by     integer NOT NULL REFERENCES users (id),
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX comparison_cohorts_commissioner_idx ON comparison_cohorts (commissioner_id);

CREATE TABLE comparison_members (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cohort_id     integer NOT NULL REFERENCES comparison_cohorts (id),
    -- The commissioner's pseudonymous reference: never a name or an NHS number.
    reference     text NOT NULL CHECK (length(reference) BETWEEN 1 AND 100),
    date_of_birth date,
    -- The referral (or matching) date: events on it are the index event, never baseline.
    index_date    date NOT NULL,
    -- Follow-up starts here, as the service starts for people served.
    follow_from   date NOT NULL,
    -- Follow-up ends (the person was served, moved away or died), inclusive.
    ended_on      date,
    withdrawn     boolean NOT NULL DEFAULT false,
    recorded_by   integer NOT NULL REFERENCES users (id),
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (follow_from >= index_date),
    CHECK (ended_on IS NULL OR ended_on >= follow_from)
);
CREATE INDEX comparison_members_idx
    ON comparison_members (cohort_id, reference, recorded_at DESC, id DESC);

CREATE TABLE comparison_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cohort_id   integer NOT NULL REFERENCES comparison_cohorts (id),
    reference   text NOT NULL CHECK (length(reference) BETWEEN 1 AND 100),
    kind        text NOT NULL CHECK (kind IN ('fall', 'emergency_admission', 'care_home_admission')),
    occurred_on date NOT NULL,
    -- Where it is known from (GP record, hospital episode statistics, council records).
    source      text NOT NULL CHECK (length(source) BETWEEN 1 AND 100),
    recorded_by integer NOT NULL REFERENCES users (id),
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX comparison_events_idx ON comparison_events (cohort_id, reference, occurred_on);

CREATE TRIGGER comparison_cohorts_append_only BEFORE UPDATE OR DELETE ON comparison_cohorts
    FOR EACH ROW EXECUTE FUNCTION homeward_refuse_change();
CREATE TRIGGER comparison_members_append_only BEFORE UPDATE OR DELETE ON comparison_members
    FOR EACH ROW EXECUTE FUNCTION homeward_refuse_change();
CREATE TRIGGER comparison_events_append_only BEFORE UPDATE OR DELETE ON comparison_events
    FOR EACH ROW EXECUTE FUNCTION homeward_refuse_change();
