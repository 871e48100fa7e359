-- Contract terms are versioned, and issued payment statements are recorded item by item, so
-- overlapping statements cannot pay twice.
--
-- `contract_terms`: every change of a contract's terms is a new version with the day it holds
-- from and who set it; versions are never changed or deleted. A statement prices a period with
-- the version valid on the period's first day (the highest version whose `valid_from` is on or
-- before it). The terms move here from `contracts.terms` (version 1, valid from the contract's
-- start, set by its commissioner).
--
-- `payment_statements` and `payment_ledger`: a statement issued for a contract and period, and
-- each item it paid or deducted, keyed by what it pays for (`plan_outcome/17/balance`,
-- `episode/4/price`, `scheduled_visit/9/missed_penalty`; `period/<line>/<from>/<to>` for a sum
-- that belongs to the period). A key pays once per contract; a period's sum pays once for any
-- day (the issuing code refuses a line whose period overlaps one already issued).

CREATE TABLE contract_terms (
    contract_id            integer NOT NULL REFERENCES contracts (id),
    version                integer NOT NULL CHECK (version >= 1),
    valid_from             date NOT NULL,
    terms                  jsonb NOT NULL,
    set_by                 integer REFERENCES users (id),
    set_by_organisation_id integer NOT NULL REFERENCES organisations (id),
    set_at                 timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (contract_id, version)
);
CREATE TRIGGER contract_terms_append_only BEFORE UPDATE OR DELETE ON contract_terms
    FOR EACH ROW EXECUTE FUNCTION homeward_refuse_change();

INSERT INTO contract_terms (contract_id, version, valid_from, terms, set_by_organisation_id, set_at)
SELECT id, 1, starts_on, terms, commissioner_id, created_at
  FROM contracts WHERE terms <> '{}'::jsonb;
ALTER TABLE contracts DROP COLUMN terms;

CREATE TABLE payment_statements (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    contract_id   integer NOT NULL REFERENCES contracts (id),
    -- NULL: no terms were valid on the period's first day (nothing paid).
    terms_version integer,
    period_from   date NOT NULL,
    period_to     date NOT NULL,
    as_of         date NOT NULL,
    report_id     bigint NOT NULL REFERENCES outcome_reports (id),
    total_pence   bigint NOT NULL,
    issued_by     integer NOT NULL REFERENCES users (id),
    issued_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (period_to > period_from),
    FOREIGN KEY (contract_id, terms_version) REFERENCES contract_terms (contract_id, version)
);
CREATE INDEX payment_statements_contract_idx ON payment_statements (contract_id, period_to);

CREATE TABLE payment_ledger (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    statement_id  bigint NOT NULL REFERENCES payment_statements (id),
    contract_id   integer NOT NULL REFERENCES contracts (id),
    code          text NOT NULL CHECK (code ~ '^[a-z_]{1,60}$'),
    item_key      text NOT NULL CHECK (length(item_key) BETWEEN 1 AND 200),
    amount_pence  bigint NOT NULL
);
CREATE UNIQUE INDEX payment_ledger_once_idx ON payment_ledger (contract_id, item_key)
    WHERE item_key NOT LIKE 'period/%';
CREATE INDEX payment_ledger_contract_idx ON payment_ledger (contract_id, code);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['payment_statements', 'payment_ledger'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I
                        FOR EACH ROW EXECUTE FUNCTION homeward_refuse_change()',
                       t || '_append_only', t);
    END LOOP;
END
$$;
