-- How to reach a person's home and get in: the postal address, plain notes on access (which
-- door, a dog, a neighbour with a key) and the key-safe code. Shown on the person's page and
-- on an alarm's page to the provider's roles that respond; commissioners never read people.
-- The key-safe code is never written to the audit log in clear (src/people/routes.rs).
ALTER TABLE people
    ADD COLUMN address       text CHECK (address IS NULL OR length(address) BETWEEN 1 AND 500),
    ADD COLUMN access_notes  text CHECK (access_notes IS NULL OR length(access_notes) BETWEEN 1 AND 1000),
    ADD COLUMN key_safe_code text CHECK (key_safe_code IS NULL OR length(key_safe_code) BETWEEN 1 AND 50);
