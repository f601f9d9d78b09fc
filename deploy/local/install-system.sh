#!/usr/bin/env bash
# Installs the system packages cofab's local stack and tests need, from Debian's archive, when
# they are missing: Java 17+ and Maven (Kafka broker), PostgreSQL (integration tests), openssl
# (TLS tests), Node.js with npm (the Node partner example, the TypeScript generator), Go (the Go
# partner example and the Go generators) and bubblewrap (the script sandbox).
# Idempotent; quiet when all is present.
set -euo pipefail

missing=()
java_ok() {
  command -v java >/dev/null 2>&1 || return 1
  local major
  major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
  [ -n "$major" ] && [ "$major" -ge 17 ]
}
java_ok || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=(postgresql)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
# Go builds the Go partner example and the code generators (go.mod needs Go 1.26; the machine's Go
# is used as it is, GOTOOLCHAIN=local).
command -v go >/dev/null 2>&1 || missing+=(golang-go)
# bubblewrap sandboxes user-supplied CadQuery scripts (no network, read-only root).
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${missing[*]}; install them (sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
# Debian starts a cluster on install; the stack runs its own PostgreSQL on its own ports.
if command -v pg_lsclusters >/dev/null 2>&1; then
  pg_lsclusters -h 2>/dev/null | while read -r version name _; do
    pg_ctlcluster "$version" "$name" stop 2>/dev/null || true
  done
fi
