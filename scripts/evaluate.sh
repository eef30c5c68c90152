#!/usr/bin/env bash
# The evaluation of docs/evaluation.md: a synthetic organisation's timeline
# with attacks (examples/synth_org.rs; real phishing bodies from
# ../shared/corpus when it is beside the checkout, and real legitimate
# bodies for new contacts from its TREC slice), replayed
# prequentially with its engagement events, then the table.
#   scripts/evaluate.sh [OUT_DIR] [DAYS] [SEED ...]
# With several seeds, each timeline goes to OUT_DIR-sSEED and each prints
# its table (docs/evaluation.md uses 1 7 13 21 31 43).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-/tmp/sra-eval}"
days="${2:-240}"
seeds=("${@:3}")
[ ${#seeds[@]} -gt 0 ] || seeds=(1)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sra-milter/target}"
cargo build --release --bin sra-milter --example synth_org --example evaluate
bin="$CARGO_TARGET_DIR/release"

evaluate() { # DIR SEED
    local dir=$1 seed=$2
    rm -rf "$dir"
    mkdir -p "$dir"
    local corpus=()
    if [ -f ../shared/corpus/phishing-public.tar.xz ]; then
        tar xJf ../shared/corpus/phishing-public.tar.xz -C "$dir"
        corpus+=(--phish "$dir/phishing-public")
    fi
    if [ -f ../shared/corpus/trec07p-public.tar.xz ]; then
        tar xJf ../shared/corpus/trec07p-public.tar.xz -C "$dir"
        corpus+=(--ham "$dir/trec07p-public/index")
    fi
    "$bin/examples/synth_org" "$dir" --days "$days" --seed "$seed" "${corpus[@]}"
    "$bin/sra-milter" replay -c "$dir/sra-milter.toml" --events "$dir/events.jsonl" \
        --jsonl "$dir/verdicts.jsonl" "$dir/mail"
    "$bin/examples/evaluate" --synthetic "$dir/verdicts.jsonl" "$dir/labels.tsv"
}

if [ ${#seeds[@]} -eq 1 ]; then
    evaluate "$out" "${seeds[0]}"
else
    for s in "${seeds[@]}"; do
        echo "## seed $s"
        evaluate "$out-s$s" "$s"
    done
fi
