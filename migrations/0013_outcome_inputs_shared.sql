-- Outcome inputs the paid party does not control alone.
--
-- 1. Who recorded each version of an outcome record: the provider (its staff) or the
--    commissioner funding the person. `organisation_id` stays the provider's (whose person it
--    is); `recorder` says which side wrote the version and `recorded_by` which user.
-- 2. Commissioners verify or dispute versions of outcome records: an append-only table.
-- 3. Plan achievements come from the person: one-time links (only hashes stored), the
--    person's answers (append-only) and the council's retrospective verification
--    (append-only). `plan_outcomes.achieved_on`, `confirmed_by` and `confirmed_at` (ticked by
--    provider staff before this migration) are no longer read or written.
-- 4. Plan agreements record who agreed (user and organisation), not only when.

-- A constant default adds the column without rewriting or updating any row (the tables refuse
-- updates since 0010): every version before this migration was written by the provider.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['service_periods', 'hospital_stays', 'reablement_episodes',
                             'care_home_admissions', 'deaths', 'recorded_falls'] LOOP
        EXECUTE format('ALTER TABLE %I ADD COLUMN recorder text NOT NULL DEFAULT ''provider''
                            CONSTRAINT %I CHECK (recorder IN (''provider'', ''commissioner''))',
                       t, t || '_recorder_known');
    END LOOP;
END
$$ LANGUAGE plpgsql;

-- A commissioner's verdict on one version of an outcome record. A later version (a
-- correction) is not covered by the verdict on an earlier one; a later verdict on the same
-- version replaces the earlier one from its `verified_at` on.
CREATE TABLE outcome_record_verifications (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source          text NOT NULL CHECK (source IN ('service_periods', 'hospital_stays',
                        'reablement_episodes', 'care_home_admissions', 'deaths', 'recorded_falls')),
    record_id       bigint NOT NULL,
    version_id      bigint NOT NULL,
    verdict         text NOT NULL CHECK (verdict IN ('verified', 'disputed')),
    note            text CHECK (length(note) BETWEEN 1 AND 1000),
    verified_by     integer NOT NULL REFERENCES users (id),
    verified_by_organisation integer NOT NULL REFERENCES organisations (id),
    verified_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outcome_record_verifications_version_idx
    ON outcome_record_verifications (source, version_id, verified_at DESC, id DESC);
CREATE TRIGGER outcome_record_verifications_append_only
    BEFORE UPDATE OR DELETE ON outcome_record_verifications
    FOR EACH ROW EXECUTE FUNCTION homeward_refuse_change();

-- A one-time link (and its short code) for a person to confirm one outcome of their plan.
-- Only SHA-256 hashes of the token and the code are stored: the database cannot give out a
-- link. A link is used by the first answer to it (plan_outcome_confirmations.link_id is unique).
CREATE TABLE plan_confirmation_links (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plan_id         bigint NOT NULL REFERENCES outcome_plans (id),
    outcome_id      bigint NOT NULL REFERENCES plan_outcomes (id),
    token_hash      bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    code_hash       bytea NOT NULL UNIQUE CHECK (length(code_hash) = 32),
    issued_by       integer NOT NULL REFERENCES users (id),
    issued_by_organisation integer NOT NULL REFERENCES organisations (id),
    issued_at       timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    CHECK (expires_at > issued_at)
);
CREATE INDEX plan_confirmation_links_outcome_idx ON plan_confirmation_links (outcome_id);
CREATE TRIGGER plan_confirmation_links_append_only
    BEFORE UPDATE OR DELETE ON plan_confirmation_links
    FOR EACH ROW EXECUTE FUNCTION homeward_refuse_change();

-- The person's (or family's) answer through their link: `yes` ("I can do this now") dates the
-- achievement (the UTC date of `confirmed_at`); `not_yet` records that it is not achieved.
CREATE TABLE plan_outcome_confirmations (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    link_id         bigint NOT NULL UNIQUE REFERENCES plan_confirmation_links (id),
    outcome_id      bigint NOT NULL REFERENCES plan_outcomes (id),
    answer          text NOT NULL CHECK (answer IN ('yes', 'not_yet')),
    feedback        text CHECK (length(feedback) BETWEEN 1 AND 2000),
    confirmed_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX plan_outcome_confirmations_outcome_idx
    ON plan_outcome_confirmations (outcome_id, confirmed_at);
CREATE TRIGGER plan_outcome_confirmations_append_only
    BEFORE UPDATE OR DELETE ON plan_outcome_confirmations
    FOR EACH ROW EXECUTE FUNCTION homeward_refuse_change();

-- The council's retrospective check of a confirmed achievement; the newest verdict known at a
-- moment decides.
CREATE TABLE plan_outcome_verifications (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outcome_id      bigint NOT NULL REFERENCES plan_outcomes (id),
    confirmation_id bigint NOT NULL REFERENCES plan_outcome_confirmations (id),
    verdict         text NOT NULL CHECK (verdict IN ('verified', 'rejected')),
    note            text CHECK (length(note) BETWEEN 1 AND 1000),
    verified_by     integer NOT NULL REFERENCES users (id),
    verified_by_organisation integer NOT NULL REFERENCES organisations (id),
    verified_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX plan_outcome_verifications_outcome_idx
    ON plan_outcome_verifications (outcome_id, verified_at DESC, id DESC);
CREATE TRIGGER plan_outcome_verifications_append_only
    BEFORE UPDATE OR DELETE ON plan_outcome_verifications
    FOR EACH ROW EXECUTE FUNCTION homeward_refuse_change();

-- Who agreed a plan, beside when: the user who recorded each agreement and their organisation
-- (for the person's own agreement, the provider's staff member who recorded it).
ALTER TABLE outcome_plans
    ADD COLUMN agreed_by_person_user integer REFERENCES users (id),
    ADD COLUMN agreed_by_person_organisation integer REFERENCES organisations (id),
    ADD COLUMN agreed_by_provider_user integer REFERENCES users (id),
    ADD COLUMN agreed_by_provider_organisation integer REFERENCES organisations (id),
    ADD COLUMN agreed_by_council_user integer REFERENCES users (id),
    ADD COLUMN agreed_by_council_organisation integer REFERENCES organisations (id);
