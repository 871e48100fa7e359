-- What a commissioner may see of a provider's people: only people funded under one of its
-- contracts with that provider (a service period on that contract), on days within both the
-- contract's dates and the service period's. One definition, used by every commissioner view
-- (visits, exceptions, exports, alarm response times), so that a council sees neither another
-- council's nor self-funded people at the same provider, nor anything after its contract ended.
CREATE FUNCTION homeward_funded(commissioner integer, provider integer, person integer, day date)
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
           AND day >= greatest(c.starts_on, sp.started_on)
           AND day <= least(coalesce(c.ends_on, 'infinity'::date),
                            coalesce(sp.ended_on, 'infinity'::date)))
$$;
