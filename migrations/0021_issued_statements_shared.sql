-- An issued payment statement is the commissioner's report (`outcome_reports`, its
-- organisation) and the provider's bill alike: the stored statement report of an issued
-- statement is visible to whoever may see the statement (the parties of its contract; the
-- subquery is itself filtered by the policy on `payment_statements`, through `contracts`).
-- Other reports stay their organisation's alone; writing stays the organisation's own.
DROP POLICY homeward_tenant ON outcome_reports;
CREATE POLICY homeward_tenant ON outcome_reports
    USING (organisation_id = ANY ((SELECT homeward_orgs())::integer[])
           OR id IN (SELECT report_id FROM payment_statements))
    WITH CHECK (organisation_id = ANY ((SELECT homeward_orgs())::integer[]));
