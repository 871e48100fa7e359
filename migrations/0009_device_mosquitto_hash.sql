-- A second form of each device secret, for external brokers that check device credentials
-- themselves: the secret hashed in Mosquitto's password-file format, written when the secret is
-- created or rotated (Homeward never keeps a secret itself, so it cannot be derived later).
-- `homeward admin export-mosquitto` writes these into a Mosquitto password file.
--
-- Format (Mosquitto 2.0, PBKDF2-HMAC-SHA512): `$7$<iterations>$<base64 salt>$<base64 hash>`.
-- NULL for devices whose secret was set before this column existed: they cannot be exported
-- until their secret is rotated.
ALTER TABLE devices
    ADD COLUMN secret_mosquitto_hash text
        CHECK (secret_mosquitto_hash IS NULL
               OR secret_mosquitto_hash ~ '^\$7\$[0-9]+\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*$');

-- The two forms must never disagree: an update that changes `secret_hash` without giving a new
-- Mosquitto hash (a writer that predates this column) clears the Mosquitto hash, so an export
-- can never carry a secret that no longer works anywhere else.
CREATE FUNCTION homeward_devices_secret_forms() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.secret_hash IS DISTINCT FROM OLD.secret_hash
       AND NEW.secret_mosquitto_hash IS NOT DISTINCT FROM OLD.secret_mosquitto_hash THEN
        NEW.secret_mosquitto_hash := NULL;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER devices_secret_forms
    BEFORE UPDATE OF secret_hash ON devices
    FOR EACH ROW EXECUTE FUNCTION homeward_devices_secret_forms();
