#!/usr/bin/env bash
# The evaluation of docs/evaluation.md: a synthetic organisation's timeline
# with attacks (examples/synth_org.rs; real phishing bodies from
# ../shared/corpus when it is beside the checkout, and real legitimate
# bodies for new contacts from its TREC slice), replayed
# prequentially with its engagement events, then the table.
#   scripts/evaluate.sh [OUT_DIR] [DAYS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-/tmp/sra-eval}"
days="${2:-240}"
seed="${3:-1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sra-milter/target}"
cargo build --release --bin sra-milter --example synth_org --example evaluate
bin="$CARGO_TARGET_DIR/release"
rm -rf "$out"
mkdir -p "$out"
corpus=()
if [ -f ../shared/corpus/phishing-public.tar.xz ]; then
    tar xJf ../shared/corpus/phishing-public.tar.xz -C "$out"
    corpus+=(--phish "$out/phishing-public")
fi
if [ -f ../shared/corpus/trec07p-public.tar.xz ]; then
    tar xJf ../shared/corpus/trec07p-public.tar.xz -C "$out"
    corpus+=(--ham "$out/trec07p-public/index")
fi
"$bin/examples/synth_org" "$out" --days "$days" --seed "$seed" "${corpus[@]}"
"$bin/sra-milter" replay -c "$out/sra-milter.toml" --events "$out/events.jsonl" \
    --jsonl "$out/verdicts.jsonl" "$out/mail"
"$bin/examples/evaluate" --synthetic "$out/verdicts.jsonl" "$out/labels.tsv"
