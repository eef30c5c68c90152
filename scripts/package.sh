#!/usr/bin/env bash
# Builds the .deb and .rpm from a clean checkout into target/packages/.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
command -v cargo-generate-rpm >/dev/null || cargo install --locked cargo-generate-rpm
cargo build --release --locked --bin sra-milter
target="${CARGO_TARGET_DIR:-target}"
# cargo-deb and cargo-generate-rpm read assets relative to the checkout.
if [ "$target" != "target" ]; then
    mkdir -p target/release
    cp "$target/release/sra-milter" target/release/sra-milter
fi
strip target/release/sra-milter
mkdir -p target/packages
cargo deb --no-build --no-strip --output target/packages/
cargo generate-rpm --output target/packages/
ls -l target/packages/
