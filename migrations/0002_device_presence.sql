-- The last online/offline status each device announced on its retained status topic
-- (its last will says offline). Written by ingest; read by device health.
CREATE TABLE device_presence (
    device_id  integer PRIMARY KEY REFERENCES devices (id),
    online     boolean NOT NULL,
    changed_at timestamptz NOT NULL
);
