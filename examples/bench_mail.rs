//! The signed message of scripts/postfix-bench.sh's `auth` runs: a fresh
//! Ed25519 key, one message from carol@partner.example signed with it
//! (selector `s1`), and the DNS records that make SPF, DKIM and DMARC pass
//! for a client at 127.0.0.1.
//!
//!     cargo run --release --example bench_mail -- MESSAGE_FILE
//!
//! Writes the message (LF line ends, as smtp-source -F wants it) to
//! MESSAGE_FILE and prints one `NAME<TAB>TXT` line per DNS record.

#[path = "../tests/support/dkim.rs"]
mod dkim;

fn main() {
    let Some(out) = std::env::args().nth(1) else {
        eprintln!("usage: bench_mail MESSAGE_FILE");
        std::process::exit(2);
    };
    let key = dkim::TestKey::new();
    let headers = [
        ("From", "Carol <carol@partner.example>"),
        ("To", "Alice <alice@example.com>"),
        ("Subject", "Quarterly figures"),
        ("Message-ID", "<bench-1@partner.example>"),
        ("Date", "Sun, 29 Nov 2026 12:00:00 +0000"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=utf-8"),
    ];
    let body = "Hello Alice,\r\n\r\nthe figures you asked for are below; \
                see https://partner.example/q3 for the full report.\r\n\r\n\
                Revenue 1.2M, costs 0.9M.\r\n\r\nCarol\r\n";
    let mut text = String::new();
    for (n, v) in headers {
        text.push_str(&format!("{n}: {v}\r\n"));
    }
    text.push_str("\r\n");
    text.push_str(body);
    let (name, value) = key.sign(&text, "partner.example", "s1");
    let signed = format!("{name}: {value}\r\n{text}").replace("\r\n", "\n");
    if let Err(e) = std::fs::write(&out, signed) {
        eprintln!("bench_mail: {out}: {e}");
        std::process::exit(1);
    }
    println!("partner.example\tv=spf1 ip4:127.0.0.1 -all");
    println!("_dmarc.partner.example\tv=DMARC1; p=reject");
    println!("s1._domainkey.partner.example\t{}", key.dns_record());
}
