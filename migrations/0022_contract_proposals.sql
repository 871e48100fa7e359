-- A contract proposed by a commissioner and accepted by the provider. A contract lets the
-- commissioner see the people the provider serves under it (homeward_visible_orgs, 0018), so
-- neither party makes one alone over the API: the council proposes, the provider's
-- administrator accepts (which creates the row in `contracts`), declines, or the council
-- withdraws it. The operator's command line still creates contracts directly.
CREATE TABLE contract_proposals (
    id              integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    commissioner_id integer NOT NULL REFERENCES organisations (id),
    provider_id     integer NOT NULL REFERENCES organisations (id),
    reference       text NOT NULL CHECK (length(reference) BETWEEN 1 AND 100),
    starts_on       date NOT NULL,
    ends_on         date,
    proposed_by     integer NOT NULL REFERENCES users (id),
    proposed_at     timestamptz NOT NULL DEFAULT now(),
    status          text NOT NULL DEFAULT 'open'
                    CHECK (status IN ('open', 'accepted', 'declined', 'withdrawn')),
    decided_by      integer REFERENCES users (id),
    decided_at      timestamptz,
    -- The contract an acceptance created.
    contract_id     integer REFERENCES contracts (id),
    CHECK (ends_on IS NULL OR ends_on >= starts_on),
    CHECK (commissioner_id <> provider_id),
    CHECK ((status = 'open') = (decided_at IS NULL)),
    CHECK ((status = 'accepted') = (contract_id IS NOT NULL))
);
-- One open proposal per reference of a commissioner (a contract's reference is unique too).
CREATE UNIQUE INDEX contract_proposals_open_idx ON contract_proposals (commissioner_id, reference)
    WHERE status = 'open';
CREATE INDEX contract_proposals_provider_idx ON contract_proposals (provider_id, id);
SELECT homeward_tenant_policy('contract_proposals', 'commissioner_id', 'provider_id');
