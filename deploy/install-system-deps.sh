#!/usr/bin/env bash
# Install the system packages the tests need (PostgreSQL + PostGIS for the STAC API fixture, QGIS with its Python
# bindings for the system python3 for the Processing provider test), when missing.
# Runs apt-get only as root; otherwise it says what is missing and leaves it to the user.
set -euo pipefail

missing=()
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [[ -z "$pg_bin" || ! -x "$pg_bin/initdb" ]]; then
    missing+=(postgresql)
fi
if ! ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1; then
    if [[ -n "$pg_bin" ]]; then
        major=$(basename "$(dirname "$pg_bin")")
        missing+=("postgresql-${major}-postgis-3")
    else
        missing+=(postgis)
    fi
fi
if ! /usr/bin/python3 -c "import qgis.core" >/dev/null 2>&1; then
    missing+=(qgis python3-qgis)
fi
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "missing system packages: ${missing[*]} (install them with apt-get as root)" >&2
    exit 1
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# a fresh install may have added a server version: install its PostGIS too
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
major=$(basename "$(dirname "$pg_bin")")
if ! ls "/usr/share/postgresql/${major}/extension/postgis.control" >/dev/null 2>&1; then
    apt-get install -y -qq --no-install-recommends "postgresql-${major}-postgis-3" >/dev/null
fi
