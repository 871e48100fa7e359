-- Reports that can be computed again, byte for byte, and restated.
--
-- A commissioner's populations keep their history: each change is a new row, and the population
-- as known at T is the newest row recorded by T (rows are never changed; the trigger of
-- migration 0010 refuses it).
ALTER TABLE commissioner_populations DROP CONSTRAINT commissioner_populations_pkey;
ALTER TABLE commissioner_populations
    ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ADD COLUMN recorded_by integer REFERENCES users (id),
    ADD COLUMN recorded_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX commissioner_populations_known_idx
    ON commissioner_populations (commissioner_id, age_group, id DESC);
CREATE TRIGGER commissioner_populations_append_only BEFORE UPDATE OR DELETE
    ON commissioner_populations FOR EACH ROW EXECUTE FUNCTION homeward_refuse_change();

-- What a report was computed from, beside its figures: the moment whose knowledge it read, the
-- settings in force, and the exact bytes produced (jsonb `figures` normalises them). A
-- restatement names the report it restates. Reports stored before this migration have no
-- `known_at` and cannot be computed again.
ALTER TABLE outcome_reports
    ADD COLUMN known_at timestamptz,
    ADD COLUMN settings jsonb,
    ADD COLUMN body text,
    ADD COLUMN restates bigint REFERENCES outcome_reports (id);
