#!/usr/bin/env bash
# Runs sra-milter in the foreground on the embedded default: the example
# config, a RocksDB store in ./state, monitor-only, listening on
# inet:127.0.0.1:8894. Extra arguments go to `sra-milter run`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
exec cargo run --release -- run -c examples/sra-milter.toml --state-dir ./state --monitor-only "$@"
