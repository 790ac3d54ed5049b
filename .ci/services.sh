#!/usr/bin/env bash
# Installs the real tools the tests use from Debian's packages when they are missing: the
# metrics tests' promtool and prometheus-pushgateway, jq, the lake suite's PostgreSQL server.
# The tests start their own Pushgateway (on 127.0.0.1 only) and PostgreSQL (on a unix
# socket in a throwaway folder). Without root or apt the tools stay missing and those tests
# are skipped with the reason.
set -uo pipefail
need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-pushgateway >/dev/null 2>&1 || need+=(prometheus-pushgateway)
# jq: the README's join of sqlflow's JSON log events to metrics and loads is run as written.
command -v jq >/dev/null 2>&1 || need+=(jq)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "services: cannot install ${need[*]} (needs root and apt-get); the tests that need them will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the services on install; the tests run their own on loopback ports.
for svc in prometheus prometheus-pushgateway prometheus-node-exporter; do
  (command -v systemctl >/dev/null 2>&1 && systemctl stop "$svc") >/dev/null 2>&1 || true
  pkill -x "$svc" >/dev/null 2>&1 || true
done
# Debian's own PostgreSQL cluster (port 5432) is not used: stop it.
for conf in /etc/postgresql/*/main; do
  [ -d "$conf" ] || continue
  version=$(basename "$(dirname "$conf")")
  (command -v pg_ctlcluster >/dev/null 2>&1 && pg_ctlcluster "$version" main stop) >/dev/null 2>&1 || true
done
exit 0
