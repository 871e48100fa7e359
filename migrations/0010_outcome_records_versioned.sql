-- Outcome inputs become append-only records with versions, so a report can be computed from the
-- data as it was known at any moment and reproduced later byte for byte.
--
-- Each of the tables below holds versions of records. The first version of a record has
-- `corrects` NULL and `record_id` = its own id; a later version (a discharge, the end of an
-- episode, a correction, a withdrawal) is a new row whose `corrects` names the version it
-- replaces and whose `record_id` is the record's (set by the trigger below). A version with
-- `withdrawn` removes the record (entered in error). The record as known at time T is its
-- newest version with `recorded_at <= T`; rows are never updated or deleted (the trigger
-- below refuses both), so what was known at T stays knowable.

CREATE FUNCTION homeward_record_version() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    prev record;
BEGIN
    IF NEW.corrects IS NULL THEN
        NEW.record_id := NEW.id;
        RETURN NEW;
    END IF;
    EXECUTE format('SELECT record_id, organisation_id, person_id FROM %I WHERE id = $1',
                   TG_TABLE_NAME)
       INTO prev USING NEW.corrects;
    IF prev.record_id IS NULL THEN
        RAISE EXCEPTION 'version % of % does not exist', NEW.corrects, TG_TABLE_NAME
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF prev.organisation_id <> NEW.organisation_id OR prev.person_id <> NEW.person_id THEN
        RAISE EXCEPTION 'a new version of a % record keeps its organisation and person',
            TG_TABLE_NAME USING ERRCODE = 'check_violation';
    END IF;
    NEW.record_id := prev.record_id;
    RETURN NEW;
END
$$;

CREATE FUNCTION homeward_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are never changed or deleted: record a new version', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

ALTER TABLE service_periods ADD COLUMN recorded_at timestamptz;
UPDATE service_periods SET recorded_at = created_at;
ALTER TABLE service_periods ALTER COLUMN recorded_at SET NOT NULL,
                            ALTER COLUMN recorded_at SET DEFAULT now(),
                            ADD COLUMN recorded_by integer REFERENCES users (id);

ALTER TABLE deaths DROP CONSTRAINT deaths_pkey;
ALTER TABLE deaths ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY;
CREATE INDEX deaths_person_idx ON deaths (person_id);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['service_periods', 'hospital_stays', 'reablement_episodes',
                             'care_home_admissions', 'deaths', 'recorded_falls'] LOOP
        EXECUTE format('ALTER TABLE %I
            ADD COLUMN record_id bigint,
            ADD COLUMN corrects bigint REFERENCES %I (id),
            ADD COLUMN withdrawn boolean NOT NULL DEFAULT false,
            ADD COLUMN reason text CHECK (length(reason) BETWEEN 1 AND 500),
            ADD CONSTRAINT %I CHECK (corrects IS NULL OR reason IS NOT NULL),
            ADD CONSTRAINT %I CHECK (NOT withdrawn OR corrects IS NOT NULL)',
            t, t, t || '_reason_needed', t || '_withdraws_a_version');
        EXECUTE format('UPDATE %I SET record_id = id', t);
        EXECUTE format('ALTER TABLE %I ALTER COLUMN record_id SET NOT NULL', t);
        EXECUTE format('CREATE UNIQUE INDEX %I ON %I (corrects)', t || '_corrects_once', t);
        EXECUTE format('CREATE INDEX %I ON %I (record_id, recorded_at DESC, id DESC)',
                       t || '_record_idx', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT ON %I
                        FOR EACH ROW EXECUTE FUNCTION homeward_record_version()',
                       t || '_version', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I
                        FOR EACH ROW EXECUTE FUNCTION homeward_refuse_change()',
                       t || '_append_only', t);
    END LOOP;
END
$$ LANGUAGE plpgsql;

-- One death per person, as first recorded; corrections are versions of that record.
CREATE UNIQUE INDEX deaths_one_per_person ON deaths (person_id) WHERE corrects IS NULL;

-- Funding is read from the service periods as known now: a withdrawn or replaced version no
-- longer lets a commissioner see a person.
CREATE OR REPLACE FUNCTION homeward_funded(commissioner integer, provider integer, person integer, day date)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT EXISTS (
        SELECT 1
          FROM service_periods sp
          JOIN contracts c ON c.id = sp.contract_id
         WHERE c.commissioner_id = commissioner
           AND c.provider_id = provider
           AND sp.organisation_id = provider
           AND sp.person_id = person
           AND NOT sp.withdrawn
           AND NOT EXISTS (SELECT 1 FROM service_periods n WHERE n.corrects = sp.id)
           AND day >= greatest(c.starts_on, sp.started_on)
           AND day <= least(coalesce(c.ends_on, 'infinity'::date),
                            coalesce(sp.ended_on, 'infinity'::date)))
$$;
