#!/usr/bin/env bash
# Creates the airflow and mlflow roles and databases, each database owned by its role.
# The postgres image runs /docker-entrypoint-initdb.d/ once, on the first start with an empty
# data volume; to change these passwords later, use ALTER ROLE (or start from a new volume).
set -euo pipefail

create_database() {
  local name=$1 password=$2
  # psql variables (:"name", :'password') quote the values, whatever characters they hold.
  psql --set ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    --set name="$name" --set password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
SQL
}

create_database airflow "$AIRFLOW_DB_PASSWORD"
create_database mlflow "$MLFLOW_DB_PASSWORD"
