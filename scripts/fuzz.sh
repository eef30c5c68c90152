#!/usr/bin/env bash
# Fuzzes the parsers for a bounded time each (cargo-fuzz, nightly):
# the message builder, Authentication-Results, engagement events, the
# config file, the stored record and the identity checks (lookalikes,
# display names). Seeds are written here, plus real mail
# from ../shared/corpus when it is beside the checkout (never committed).
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 30)
# A crash fails the script; libFuzzer leaves the input in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-${FUZZ_SECONDS:-30}}"
. scripts/deps.sh
# (No `grep -q` or `head` after a pipe: under pipefail the writer's SIGPIPE
# would fail the script.)
rustup toolchain list | grep '^nightly' >/dev/null || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
# Its own target directory, kept across clones like the main one.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/sra-milter/fuzz-target}"

seeds="$(mktemp -d)"
trap 'rm -rf "$seeds"' EXIT
for t in message auth_results events config record identity; do mkdir -p "$seeds/$t"; done

printf 'From: "Jane Doe" <jane@example.org>\r\nReply-To: x@elsewhere.example\r\nMessage-ID: <a@b>\r\nIn-Reply-To: <p@q>\r\nReferences: <o@q> <p@q>\r\nAuthentication-Results: mx.example.com; spf=pass smtp.mailfrom=example.org\r\nContent-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nsee https://example.org/\r\n--B\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="a.pdf"\r\n\r\nJVBERi0=\r\n--B--\r\n' > "$seeds/message/synthetic.eml"
printf 'mx.example.com; spf=pass (ok) smtp.mailfrom=a@example.org; dkim=pass header.d=example.org header.s=s1; dmarc=fail (p=reject) policy.dmarc=reject header.from=example.org; arc=none' > "$seeds/auth_results/synthetic"
printf '{"event":"opened","message_id":"<a@b>","mailbox":"alice@example.com","time":"2026-11-24T10:00:00+01:00"}\n{"event":"junk","message_id":"<c@d>","mailbox":"bob+tag@example.com"}\n' > "$seeds/events/synthetic.jsonl"
cp examples/sra-milter.toml "$seeds/config/example.toml"
printf 'Microsoft 365\nexa.mple.com' > "$seeds/identity/synthetic"
printf 'J\xc3\xb6rg M\xc3\xbcller\nxn--exmple-4nf.com..' > "$seeds/identity/punycode"
printf 'Mike C. Fletcher\nmcfletch@vrplumber.example' > "$seeds/identity/initials"
printf 'Banco do BrasiI - P\xe2\x80\x8dayPal\nservice@mail.paypal.co.uk' > "$seeds/identity/brand"
printf '\001\350\007\320\017\002\001\003\002\001\001\001\001\014X\202\306\013\216\335\031\000\000' > "$seeds/record/synthetic"

# Real third-party mail, when the shared corpus is beside the checkout.
corpus=../shared/corpus
if [ -f "$corpus/phishing-public.tar.xz" ]; then
    tar xJf "$corpus/phishing-public.tar.xz" -C "$seeds" 2>/dev/null || true
    mapfile -t mails < <(find "$seeds/phishing-public" -type f | sort)
    for f in "${mails[@]:0:200}"; do
        cp "$f" "$seeds/message/"
        awk 'tolower($0) ~ /^authentication-results:/ { n = 4 } n > 0 { print; n-- }' "$f" \
            | sed 's/^Authentication-Results: *//I' > "$seeds/auth_results/$(basename "$f")"
    done
    rm -rf "$seeds/phishing-public"
fi
if [ -f "$corpus/trec07p-public.tar.xz" ]; then
    tar xJf "$corpus/trec07p-public.tar.xz" -C "$seeds" trec07p-public/data/inmail.1 trec07p-public/data/inmail.2 trec07p-public/data/inmail.3 2>/dev/null || true
    find "$seeds/trec07p-public" -type f -exec cp {} "$seeds/message/" \; 2>/dev/null || true
    rm -rf "$seeds/trec07p-public"
fi

cd fuzz
cargo +nightly fuzz build -O
log="$seeds/log"
for t in message auth_results events config record identity; do
    echo "fuzz: $t for ${seconds}s ($(ls "$seeds/$t" | wc -l) seeds)"
    if ! cargo +nightly fuzz run -O "$t" "$seeds/$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz: $t failed (the input is in fuzz/artifacts/$t/)"
        exit 1
    fi
    tail -n 1 "$log"
done
echo "fuzz: 6 passed, 0 failed"
