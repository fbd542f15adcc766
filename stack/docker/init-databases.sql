-- Run once by the postgres image on an empty data directory
-- (docker-compose.yml mounts it into /docker-entrypoint-initdb.d).
-- The same three databases that scripts/stack.sh creates.
CREATE DATABASE shop;
CREATE DATABASE warehouse;
CREATE DATABASE registry;
