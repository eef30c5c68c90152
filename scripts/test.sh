#!/usr/bin/env bash
# Runs every test of sra-milter: unit, in-process milter, CLI, and the
# system tests. Installs the Debian packages it needs when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
need_postfix
# A real DNS server for the authentication system tests.
need_packages dnsmasq-base
cargo test --all-targets "$@"
