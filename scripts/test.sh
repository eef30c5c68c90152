#!/usr/bin/env bash
# Runs every test of sra-milter: unit, in-process milter, CLI, and the
# system tests. Installs the Debian packages it needs when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_postfix
# A real DNS server for the authentication system tests; Dovecot with the
# Lua push driver and lua-socket for the engagement system test.
need_packages dnsmasq-base dovecot-core dovecot-imapd dovecot-lmtpd lua-socket
# Redis and Redis Cluster for the shared store tests (started by the tests).
need_packages redis-server redis-tools
# Headless Chromium and its WebDriver for the console's browser test.
need_packages chromium chromium-driver fonts-dejavu-core
cargo test --all-targets "$@"
# The packages: build, install with dpkg, check, remove, purge; rpm contents.
./scripts/package-test.sh
