-- What the official measures (ASCOF 2023-24 edition) and the independence indicator need to be
-- computed as defined, added to the versioned outcome records (migration 0010: every column
-- below is written by inserting a new version, never by an update).
--
-- 1. The sequel to a reablement episode, as ASCOF 2A (short-term support to maximise
--    independence, ST-Max) classifies it. Success: ongoing low-level support, other short-term
--    support, no services (signposted to universal services, or no needs identified). Failure:
--    long-term support in any setting. Left out of both: ended early by a life event (death,
--    hospital admission), support declined, or the person funds it themselves. The six codes of
--    migration 0005 stay valid so that stored rows keep their meaning; docs/outcomes.md maps
--    each of them.
ALTER TABLE reablement_episodes DROP CONSTRAINT reablement_episodes_result_check;
ALTER TABLE reablement_episodes ADD CONSTRAINT reablement_episodes_result_check CHECK (result IN (
    -- migration 0005
    'no_further_support', 'less_support', 'same_support', 'more_support', 'residential_care',
    'nursing_care',
    -- ASCOF 2A sequels
    'ongoing_low_level_support', 'short_term_support_other', 'universal_services',
    'no_needs_identified', 'long_term_support', 'died', 'hospital_admission', 'declined',
    'self_funded'));

-- 2. Whether the person was already in long-term support when the episode began (ASCOF 2A
--    counts new clients only), and the follow-up 91 days on: the person's status as found on
--    `follow_up_on` by contacting them. `no_contact` (could not be reached) counts as not at
--    home, as ASCOF 2D requires.
ALTER TABLE reablement_episodes
    ADD COLUMN existing_client boolean NOT NULL DEFAULT false,
    ADD COLUMN follow_up_on date,
    ADD COLUMN follow_up text CHECK (follow_up IN ('at_home', 'at_home_with_support',
                                                  'not_at_home', 'no_contact')),
    ADD CONSTRAINT reablement_episodes_follow_up_dated CHECK ((follow_up IS NULL) = (follow_up_on IS NULL)),
    ADD CONSTRAINT reablement_episodes_follow_up_after_start CHECK (follow_up_on IS NULL OR follow_up_on >= started_on);

-- 3. The end of a care-home stay: the day the person left and whether they went home. A
--    non-permanent (respite) stay the person returned home from does not make them "not at
--    home" for ASCOF 2D; a permanent admission while an earlier placement is open is a transfer
--    (residential <-> nursing), not a new admission, for ASCOF 2B/2C.
ALTER TABLE care_home_admissions
    ADD COLUMN discharged_on date,
    ADD COLUMN returned_home boolean,
    ADD CONSTRAINT care_home_admissions_discharge_whole CHECK ((discharged_on IS NULL) = (returned_home IS NULL)),
    ADD CONSTRAINT care_home_admissions_discharge_after CHECK (discharged_on IS NULL OR discharged_on >= admitted_on);
