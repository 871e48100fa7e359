-- Outcomes: service periods, episodes (hospital stays, reablement, care-home admissions,
-- deaths, falls known from records), "I can" outcome plans, commissioners' populations and
-- stored reports. See docs/outcomes.md. Reference data entered by staff; nothing here is priced
-- by the minute.

-- When a person received a provider's service (under a contract, when commissioned). The days
-- at risk come from here. `history_from`: from when the person's falls and admissions before
-- the service are known (their own baseline); NULL when they are not.
CREATE TABLE service_periods (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id integer NOT NULL REFERENCES organisations (id),
    person_id       integer NOT NULL REFERENCES people (id),
    contract_id     integer REFERENCES contracts (id),
    started_on      date NOT NULL,
    ended_on        date,
    history_from    date,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (ended_on IS NULL OR ended_on >= started_on),
    CHECK (history_from IS NULL OR history_from <= started_on)
);
CREATE INDEX service_periods_org_idx ON service_periods (organisation_id, person_id);
CREATE INDEX service_periods_contract_idx ON service_periods (contract_id);

CREATE TABLE hospital_stays (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id       integer NOT NULL REFERENCES organisations (id),
    person_id             integer NOT NULL REFERENCES people (id),
    admitted_on           date NOT NULL,
    emergency             boolean NOT NULL DEFAULT true,
    discharged_on         date,
    discharge_destination text CHECK (discharge_destination IN
                              ('home', 'home_with_reablement', 'care_home', 'died', 'other')),
    recorded_by           integer NOT NULL REFERENCES users (id),
    recorded_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (discharged_on IS NULL OR discharged_on >= admitted_on),
    CHECK ((discharged_on IS NULL) = (discharge_destination IS NULL))
);
CREATE INDEX hospital_stays_person_idx ON hospital_stays (person_id, admitted_on);

-- Reablement (short-term) episodes and what followed them.
CREATE TABLE reablement_episodes (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id integer NOT NULL REFERENCES organisations (id),
    person_id       integer NOT NULL REFERENCES people (id),
    contract_id     integer REFERENCES contracts (id),
    -- Set when the person was discharged from this hospital stay into reablement.
    hospital_stay_id bigint REFERENCES hospital_stays (id),
    aim_home        boolean NOT NULL DEFAULT true,
    started_on      date NOT NULL,
    ended_on        date,
    result          text CHECK (result IN ('no_further_support', 'less_support', 'same_support',
                        'more_support', 'residential_care', 'nursing_care')),
    recorded_by     integer NOT NULL REFERENCES users (id),
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (ended_on IS NULL OR ended_on >= started_on),
    CHECK ((ended_on IS NULL) = (result IS NULL))
);
CREATE INDEX reablement_episodes_person_idx ON reablement_episodes (person_id, started_on);
CREATE INDEX reablement_episodes_org_idx ON reablement_episodes (organisation_id, ended_on);

CREATE TABLE care_home_admissions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id integer NOT NULL REFERENCES organisations (id),
    person_id       integer NOT NULL REFERENCES people (id),
    admitted_on     date NOT NULL,
    setting         text NOT NULL CHECK (setting IN ('residential', 'nursing')),
    permanent       boolean NOT NULL,
    recorded_by     integer NOT NULL REFERENCES users (id),
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX care_home_admissions_person_idx ON care_home_admissions (person_id, admitted_on);

CREATE TABLE deaths (
    person_id       integer PRIMARY KEY REFERENCES people (id),
    organisation_id integer NOT NULL REFERENCES organisations (id),
    died_on         date NOT NULL,
    recorded_by     integer NOT NULL REFERENCES users (id),
    recorded_at     timestamptz NOT NULL DEFAULT now()
);

-- Falls known from records (GP, hospital, the person), mostly before the service began: the
-- person's own baseline. Falls during the service come from alarms (is_fall).
CREATE TABLE recorded_falls (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id integer NOT NULL REFERENCES organisations (id),
    person_id       integer NOT NULL REFERENCES people (id),
    occurred_on     date NOT NULL,
    source          text NOT NULL CHECK (length(source) BETWEEN 1 AND 100),
    recorded_by     integer NOT NULL REFERENCES users (id),
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recorded_falls_person_idx ON recorded_falls (person_id, occurred_on);

-- "I can ..." outcome plans (DOMAIN.md, Wiltshire): agreed by the person, the provider and the
-- council; at most six months; a value in pence for contracts that pay on plans.
CREATE TABLE outcome_plans (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id      integer NOT NULL REFERENCES organisations (id),
    person_id            integer NOT NULL REFERENCES people (id),
    contract_id          integer REFERENCES contracts (id),
    starts_on            date NOT NULL,
    ends_on              date NOT NULL,
    value_pence          bigint NOT NULL DEFAULT 0 CHECK (value_pence >= 0),
    agreed_by_person_at  timestamptz,
    agreed_by_provider_at timestamptz,
    agreed_by_council_at timestamptz,
    created_by           integer NOT NULL REFERENCES users (id),
    created_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_on >= starts_on AND ends_on <= starts_on + 183)
);
CREATE INDEX outcome_plans_person_idx ON outcome_plans (person_id);
CREATE INDEX outcome_plans_contract_idx ON outcome_plans (contract_id);

CREATE TABLE plan_outcomes (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plan_id      bigint NOT NULL REFERENCES outcome_plans (id),
    statement    text NOT NULL CHECK (statement ~ '^I can ' AND length(statement) <= 500),
    kind         text NOT NULL CHECK (kind IN ('reablement', 'maintenance')),
    payable      boolean NOT NULL,
    target_date  date NOT NULL,
    -- Achieved only when the person confirms it.
    achieved_on  date,
    confirmed_by integer REFERENCES users (id),
    confirmed_at timestamptz
);
CREATE INDEX plan_outcomes_plan_idx ON plan_outcomes (plan_id);

-- Population of each age group in a commissioner's area (for admissions per 100,000).
CREATE TABLE commissioner_populations (
    commissioner_id integer NOT NULL REFERENCES organisations (id),
    age_group       text NOT NULL CHECK (age_group IN ('18-64', '65+')),
    population      integer NOT NULL CHECK (population > 0),
    PRIMARY KEY (commissioner_id, age_group)
);

-- Every report produced: its period, scope, inputs (SHA-256 of the input rows) and method
-- version, and the figures, so anyone can reproduce it.
CREATE TABLE outcome_reports (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id integer NOT NULL REFERENCES organisations (id),
    kind            text NOT NULL CHECK (kind IN ('indicators', 'statement')),
    scope           text NOT NULL,
    scope_id        integer,
    period_from     date NOT NULL,
    period_to       date NOT NULL,
    as_of           date NOT NULL,
    method_version  text NOT NULL,
    input_hash      text NOT NULL,
    figures         jsonb NOT NULL,
    generated_by    integer NOT NULL REFERENCES users (id),
    generated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outcome_reports_org_idx ON outcome_reports (organisation_id, id DESC);

-- Falls for a report: by organisation and time, off the rest of the alarms.
CREATE INDEX alarms_falls_idx ON alarms (organisation_id, raised_at) WHERE is_fall;
