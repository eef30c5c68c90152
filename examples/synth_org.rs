//! A synthetic organisation's mail timeline, with attacks, for evaluating
//! the ratings (docs/evaluation.md; `scripts/evaluate.sh` runs it all).
//!
//!     cargo run --release --example synth_org -- OUT_DIR [--days N] [--seed N] [--phish DIR] [--ham TREC_INDEX]
//!
//! Writes `OUT_DIR/mail/*.eml` (inbound mail as the MX received it, with
//! the MX's `Authentication-Results`; outbound mail as submitted),
//! `OUT_DIR/events.jsonl` (opens and junk reports), `OUT_DIR/labels.tsv`
//! (`message-id TAB category TAB established(0|1)`) and
//! `OUT_DIR/sra-milter.toml`.
//!
//! The organisation: employees; correspondents at partner organisations
//! with two-way history (some of them namesakes of employees, some at
//! small domains without DKIM or DMARC, some writing through a mailing list
//! or a forwarder that breaks DMARC); employees' own freemail addresses;
//! newsletters; new legitimate contacts, some of whom become
//! correspondents, some of whom write to one person after another until
//! someone answers; a few correspondents' messages ask for answers to a
//! colleague at the partner's sister company (Reply-To elsewhere). Attacks, from day 30: spoofs of established
//! correspondents (DMARC fail, new MTA), lookalike domains of the
//! enterprise and of correspondents (every dnstwist fuzzer class),
//! display-name impersonation of employees from outside (freemail)
//! addresses, and first-contact phishing — real phishing bodies when
//! `--phish` names a directory of phishing mail (e.g. the unpacked
//! `../shared/corpus/phishing-public.tar.xz`), else synthetic ones. With
//! `--ham` (the `index` of the unpacked TREC 2007 corpus) the first
//! messages of new legitimate contacts carry the bodies of real legitimate
//! mail that came to a person directly (not list mail), so that what the
//! body shows is compared between real mail on both sides; a real message
//! that named someone else in `To:` (it came as Bcc) keeps its `To:`, as
//! a real phishing message does.
//!
//! Deterministic for a seed. About one legitimate inbound message in eight
//! does not authenticate, as in real traffic.

use mail_parser::MessageParser;
use sra_milter::vocab::{org_domain, rfc3339, rfc5322};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const START: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const DAY: u64 = 86_400;
const ORG: &str = "acmecorp.com";
const MX: &str = "mx.acmecorp.com";

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // SplitMix64.
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

const FIRST: [&str; 40] = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Daniel",
    "Lisa",
    "Matthew",
    "Nancy",
    "Anthony",
    "Betty",
    "Mark",
    "Sandra",
    "Steven",
    "Ashley",
    "Paul",
    "Emily",
    "Andrew",
    "Donna",
    "Joshua",
    "Michelle",
    "Kevin",
    "Carol",
    "Brian",
    "Amanda",
];
const LAST: [&str; 40] = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Wilson",
    "Anderson",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
];
const SYL: [&str; 24] = [
    "bright", "lane", "north", "vale", "stone", "field", "river", "tech", "nova", "core", "blue",
    "harbor", "summit", "peak", "green", "wood", "silver", "line", "apex", "data", "clear", "path",
    "metro", "works",
];
/// Outsiders' names and new contacts' domain words: apart from the
/// employees' and partners', so that namesakes and lookalikes in the
/// timeline are the intended ones.
const OUT_FIRST: [&str; 12] = [
    "Olivia", "Liam", "Noah", "Emma", "Ava", "Lucas", "Mia", "Ethan", "Zoe", "Mason", "Chloe",
    "Logan",
];
const OUT_LAST: [&str; 12] = [
    "Fischer", "Novak", "Rossi", "Dubois", "Kowalski", "Silva", "Jensen", "Okafor", "Tanaka",
    "Haddad", "Moreau", "Larsen",
];
const OUT_SYL: [&str; 12] = [
    "quill", "ember", "orchid", "falcon", "maple", "cobalt", "willow", "saffron", "granite",
    "lumen", "tundra", "zephyr",
];
const TLDS: [&str; 6] = ["com", "com", "com", "net", "org", "io"];
const FREEMAIL: [&str; 4] = ["gmail.com", "yahoo.com", "outlook.com", "aol.com"];

#[derive(Clone)]
struct Person {
    name: String,
    addr: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Auth {
    /// SPF, DKIM and DMARC pass, aligned.
    Pass,
    /// A small domain: SPF neutral, no DKIM, no DMARC record.
    Unsigned,
    /// Through a mailing list: list SPF/DKIM, DMARC fails, ARC passes.
    List,
    /// Through a forwarder: SPF fails, the DKIM signature broke, DMARC fails.
    Forwarded,
    /// A spoof: SPF fails, no DKIM, DMARC fails.
    Spoof,
}

struct Partner {
    domain: String,
    dmarc: &'static str,
    small: bool,
    ip: String,
    selector: String,
    agent: &'static str,
}

struct Contact {
    person: Person,
    partner: usize,
    owner: usize,
    /// First two-way exchange completed (sent and received), if any.
    two_way_since: Option<u64>,
    sent_to: bool,
    received_from: bool,
    via_list: bool,
}

struct Mail {
    time: u64,
    text: String,
    id: String,
    category: &'static str,
    established: bool,
}

const AGENTS: [&str; 5] = [
    "Microsoft Outlook 16.0",
    "Mozilla Thunderbird 115.6",
    "Apple Mail (2.3774)",
    "",
    "Roundcube Webmail/1.6",
];

struct Gen {
    rng: Rng,
    /// The decisions of the behaviours added after the first evaluations
    /// (a colleague's Reply-To at a sister company, cold outreach), so that
    /// they do not reshuffle what the main stream decides.
    aside: Rng,
    /// The Reply-To of the last correspondent's message, if elsewhere.
    reply_to: Option<Person>,
    mails: Vec<Mail>,
    events: Vec<String>,
    seq: u64,
    first_contact_seen: std::collections::HashSet<String>,
    /// Employees who have sent mail out.
    wrote: std::collections::HashSet<String>,
    /// The `To:` header of the next inbound message when it is not its
    /// recipient (a real message that reached its mailbox as Bcc).
    next_to: Option<String>,
}

/// Edit distance (for keeping generated domains apart).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A new domain's label is not within edit distance 2 of any other's (an
/// unintended lookalike).
fn apart(domain: &str, taken: &[String]) -> bool {
    let label = |d: &str| d.split('.').next().unwrap_or(d).to_string();
    let l = label(domain);
    taken.iter().all(|t| edit_distance(&l, &label(t)) > 2)
}

fn domain_of(a: &str) -> &str {
    a.rsplit_once('@').map_or(a, |(_, d)| d)
}

/// One dnstwist-style lookalike of `domain`, of the fuzzer class `class`.
fn twist(rng: &mut Rng, domain: &str, class: usize) -> (String, &'static str) {
    let (label, tld) = domain.split_once('.').unwrap_or((domain, "com"));
    let chars: Vec<char> = label.chars().collect();
    let n = chars.len();
    let at = 1 + rng.below(n.saturating_sub(2).max(1));
    let mk = |l: String| format!("{l}.{tld}");
    let keyboard = |c: char| -> char {
        const ROWS: [&str; 3] = ["qwertyuiop", "asdfghjkl", "zxcvbnm"];
        for r in ROWS {
            if let Some(i) = r.find(c) {
                let b = r.as_bytes();
                return if i + 1 < b.len() { b[i + 1] } else { b[i - 1] } as char;
            }
        }
        'x'
    };
    match class % 13 {
        0 => (
            mk(format!("{label}{}", (b'a' + rng.below(26) as u8) as char)),
            "addition",
        ),
        1 => {
            // A flipped bit that still gives a letter or digit.
            for _ in 0..50 {
                let i = rng.below(n);
                let b = chars[i] as u8 ^ (1 << rng.below(7));
                if b.is_ascii_lowercase() || b.is_ascii_digit() {
                    let mut v = chars.clone();
                    v[i] = b as char;
                    return (mk(v.into_iter().collect()), "bitsquatting");
                }
            }
            (mk(format!("{label}s")), "bitsquatting")
        }
        2 => {
            let swaps: [(&str, &str); 8] = [
                ("m", "rn"),
                ("w", "vv"),
                ("o", "0"),
                ("l", "1"),
                ("i", "1"),
                ("e", "3"),
                ("a", "\u{430}"),
                ("o", "\u{43e}"),
            ];
            let options: Vec<&(&str, &str)> =
                swaps.iter().filter(|(a, _)| label.contains(a)).collect();
            let (a, b) = options
                .get(rng.below(options.len()))
                .map_or(("e", "\u{435}"), |x| **x);
            (mk(label.replacen(a, b, 1)), "homoglyph")
        }
        3 => {
            let mut v = chars.clone();
            v.insert(at, '-');
            (mk(v.into_iter().collect()), "hyphenation")
        }
        4 => {
            let mut v = chars.clone();
            v.insert(at, keyboard(chars[at]));
            (mk(v.into_iter().collect()), "insertion")
        }
        5 => {
            let mut v = chars.clone();
            v.remove(at);
            (mk(v.into_iter().collect()), "omission")
        }
        6 => {
            let mut v = chars.clone();
            v.insert(at, chars[at]);
            (mk(v.into_iter().collect()), "repetition")
        }
        7 => {
            let mut v = chars.clone();
            v[at] = keyboard(chars[at]);
            (mk(v.into_iter().collect()), "replacement")
        }
        8 => {
            let mut v = chars.clone();
            v.insert(at, '.');
            (mk(v.into_iter().collect()), "subdomain")
        }
        9 => {
            let mut v = chars.clone();
            let i = at.min(n - 2);
            v.swap(i, i + 1);
            if v == chars {
                v.insert(i, 'x');
            }
            (mk(v.into_iter().collect()), "transposition")
        }
        10 => {
            let vowels = ['a', 'e', 'i', 'o', 'u'];
            let idx: Vec<usize> = (0..n).filter(|i| vowels.contains(&chars[*i])).collect();
            let mut v = chars.clone();
            if let Some(&i) = idx.get(rng.below(idx.len())) {
                v[i] = *vowels
                    .iter()
                    .find(|x| **x != chars[i] && (x.to_ascii_lowercase() as u8) > 0)
                    .unwrap_or(&'a');
            }
            (mk(v.into_iter().collect()), "vowel-swap")
        }
        11 => {
            let other = ["net", "org", "co", "io", "biz", "us"];
            let t = other
                .iter()
                .find(|t| **t != tld && rng.chance(0.4))
                .unwrap_or(&"info");
            (format!("{label}.{t}"), "tld-swap")
        }
        _ => {
            let words = [
                "secure", "login", "billing", "support", "mail", "portal", "invoice",
            ];
            let w = rng.pick(&words);
            if rng.chance(0.5) {
                (mk(format!("{label}-{w}")), "dictionary")
            } else {
                (mk(format!("{w}-{label}")), "dictionary")
            }
        }
    }
}

/// From, To, Date, Message-ID and the thread (In-Reply-To, References).
fn message_headers(
    h: &mut String,
    from: &Person,
    to: &[&Person],
    time: u64,
    id: &str,
    refs: &[String],
) {
    let _ = write!(h, "From: \"{}\" <{}>\r\n", from.name, from.addr);
    let to: Vec<String> = to
        .iter()
        .map(|p| format!("\"{}\" <{}>", p.name, p.addr))
        .collect();
    let _ = write!(h, "To: {}\r\n", to.join(", "));
    let _ = write!(h, "Date: {}\r\nMessage-ID: <{id}>\r\n", rfc5322(time));
    if let Some(last) = refs.last() {
        let refs: Vec<String> = refs.iter().map(|r| format!("<{r}>")).collect();
        let _ = write!(
            h,
            "In-Reply-To: <{last}>\r\nReferences: {}\r\n",
            refs.join(" ")
        );
    }
}

impl Gen {
    fn id(&mut self, domain: &str) -> String {
        self.seq += 1;
        format!("{:x}.{}@{}", self.seq * 7919 + 1000, self.seq, domain)
    }

    #[allow(clippy::too_many_arguments)]
    fn inbound(
        &mut self,
        time: u64,
        from: &Person,
        to: &[&Person],
        ip: &str,
        helo: &str,
        auth: Auth,
        dmarc: &str,
        selector: &str,
        agent: &str,
        refs: &[String],
        body: &str,
        extra_headers: &str,
    ) -> String {
        let dom = domain_of(&from.addr).to_string();
        let id = self.id(&dom);
        let (spf, dkim, dm, arc, mailfrom) = match auth {
            Auth::Pass => (
                "pass".to_string(),
                format!("pass header.d={dom} header.s={selector}"),
                "pass",
                "none",
                from.addr.clone(),
            ),
            Auth::Unsigned => (
                "neutral".into(),
                "none".into(),
                "none",
                "none",
                from.addr.clone(),
            ),
            Auth::List => (
                "pass".into(),
                "pass header.d=industry-forum.org header.s=lists".into(),
                "fail",
                "pass",
                "forum-bounces@industry-forum.org".into(),
            ),
            Auth::Forwarded => (
                "fail".into(),
                format!("fail (body hash did not verify) header.d={dom} header.s={selector}"),
                "fail",
                "none",
                from.addr.clone(),
            ),
            Auth::Spoof => (
                "fail".into(),
                "none".into(),
                "fail",
                "none",
                from.addr.clone(),
            ),
        };
        let mailfrom_dom = domain_of(&mailfrom).to_string();
        let policy = if dm == "none" && dmarc.is_empty() {
            "none"
        } else {
            dmarc
        };
        let dmarc_part = if matches!(auth, Auth::Unsigned) || dmarc.is_empty() {
            format!("dmarc=none header.from={dom}")
        } else {
            format!("dmarc={dm} (p={policy}) policy.dmarc={policy} header.from={dom}")
        };
        let rcpt: Vec<&str> = to.iter().map(|p| p.addr.as_str()).collect();
        let mut h = String::new();
        let _ = write!(h, "Return-Path: <{mailfrom}>\r\n");
        for r in &rcpt {
            let _ = write!(h, "Delivered-To: {r}\r\n");
        }
        let _ = write!(
            h,
            "Authentication-Results: {MX}; spf={spf} smtp.mailfrom={mailfrom_dom}; dkim={dkim}; {dmarc_part}; arc={arc}\r\n"
        );
        let _ = write!(
            h,
            "Received: from {helo} ({helo} [{ip}])\r\n\tby {MX} (Postfix) with ESMTPS id {:X}\r\n\tfor <{}>; {}\r\n",
            self.seq,
            rcpt[0],
            rfc5322(time)
        );
        message_headers(&mut h, from, to, time, &id, refs);
        if let Some(shown) = self.next_to.take() {
            let start = h.find("\r\nTo: ").map(|i| i + 2).expect("a To line");
            let end = start + h[start..].find("\r\n").expect("a line end") + 2;
            let line = if shown.is_empty() {
                String::new()
            } else {
                format!("To: {shown}\r\n")
            };
            h.replace_range(start..end, &line);
        }
        if !agent.is_empty() {
            let _ = write!(h, "User-Agent: {agent}\r\n");
        }
        h.push_str(extra_headers);
        h.push_str("MIME-Version: 1.0\r\n");
        h.push_str(body);
        self.push(time, h, id.clone(), "", false);
        id
    }

    fn outbound(&mut self, time: u64, from: &Person, to: &[&Person], refs: &[String]) -> String {
        self.wrote.insert(from.addr.clone());
        let id = self.id(ORG);
        let mut h = String::new();
        let _ = write!(h, "Return-Path: <{}>\r\n", from.addr);
        let _ = write!(
            h,
            "Received: from laptop ([10.1.{}.{}])\r\n\tby smtp.acmecorp.com (Postfix) with ESMTPSA id {:X};\r\n\t{}\r\n",
            self.rng.below(8),
            2 + self.rng.below(200),
            self.seq,
            rfc5322(time)
        );
        message_headers(&mut h, from, to, time, &id, refs);
        h.push_str("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nSubject: Re: our project\r\n\r\nThanks, see you then.\r\n");
        self.push(time, h, id.clone(), "outbound", false);
        id
    }

    /// A new contact writes again, from its own server, with no mail
    /// client named.
    fn new_contact_writes(
        &mut self,
        time: u64,
        person: &Person,
        emp: &Person,
        ip: &str,
        authd: bool,
        body: &str,
    ) -> String {
        let helo = format!("mail.{}", domain_of(&person.addr));
        let auth = if authd { Auth::Pass } else { Auth::Unsigned };
        let id = self.inbound(
            time,
            person,
            &[emp],
            ip,
            &helo,
            auth,
            "none",
            "k1",
            "",
            &[],
            body,
            "",
        );
        self.label("legit_new_contact", false, &person.addr);
        id
    }

    fn push(&mut self, time: u64, text: String, id: String, category: &'static str, est: bool) {
        self.mails.push(Mail {
            time,
            text,
            id,
            category,
            established: est,
        });
    }

    /// Labels the last pushed (inbound) message.
    fn label(&mut self, category: &'static str, established: bool, sender: &str) {
        let first = self.first_contact_seen.insert(sender.to_string());
        let m = self.mails.last_mut().expect("a message");
        m.category = if first && category == "legit_new_contact" {
            "legit_first_contact"
        } else {
            category
        };
        m.established = established;
    }

    fn open(&mut self, id: &str, mailbox: &str, time: u64, p: f64) {
        if self.rng.chance(p) {
            let t = time + 60 + self.rng.below(20_000) as u64;
            self.events.push(format!(
                "{{\"event\":\"opened\",\"message_id\":\"<{id}>\",\"mailbox\":\"{mailbox}\",\"time\":\"{}\"}}",
                rfc3339(t)
            ));
        }
    }

    fn junk(&mut self, id: &str, mailbox: &str, time: u64) {
        let t = time + 600 + self.rng.below(40_000) as u64;
        self.events.push(format!(
            "{{\"event\":\"junk\",\"message_id\":\"<{id}>\",\"mailbox\":\"{mailbox}\",\"time\":\"{}\"}}",
            rfc3339(t)
        ));
    }
}

fn plain(subject: &str, text: &str) -> String {
    format!("Content-Type: text/plain; charset=utf-8\r\nSubject: {subject}\r\n\r\n{text}\r\n")
}

fn with_attachment(subject: &str, text: &str) -> String {
    format!(
        "Content-Type: multipart/mixed; boundary=\"b1\"\r\nSubject: {subject}\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n{text}\r\n--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"doc.pdf\"\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n"
    )
}

/// A real phishing message's own From, Reply-To, Subject and MIME body.
struct Phish {
    from_name: String,
    from_addr: String,
    body: String,
    /// Its `To:` when that was not the honeypot's own mailbox: the
    /// honeypot got it as Bcc.
    to: Option<String>,
}

/// A real legitimate message's Subject and MIME body, its `To:` when that
/// did not name its recipient, and its sender.
#[derive(Clone)]
struct Ham {
    body: String,
    to: Option<String>,
    /// Its sender's organisation (registrable domain), lower case: links
    /// there are links to the sender's own site.
    from_org: String,
    /// Its sender's display name and address, as written: a new contact
    /// whose first message this is writes as that sender, so that
    /// legitimate first contact shows the names and addresses real senders
    /// use ("Jonathan Scott Duff" <perlpilot@gmail.com>), fitting or not.
    /// Empty for the sender's later messages, and for an address that is
    /// not plain ASCII.
    from_name: Option<String>,
    from_addr: String,
}

impl Ham {
    /// The body as sent from `domain`: links to the real sender's own
    /// organisation point to the synthetic sender's.
    fn body_from(&self, domain: &str) -> String {
        if self.from_org.len() < 4 {
            return self.body.clone();
        }
        self.body
            .replace(&self.from_org, domain)
            .replace(&self.from_org.to_uppercase(), domain)
    }
}

/// The folded header lines and the body of a message file.
fn read_message(path: &Path) -> Option<(Vec<String>, String)> {
    let bytes = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&bytes).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n")?;
    let mut headers: Vec<String> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(h) = headers.last_mut() {
                h.push(' ');
                h.push_str(line.trim());
            }
        } else {
            headers.push(line.to_string());
        }
    }
    Some((headers, body.to_string()))
}

fn header(headers: &[String], name: &str) -> Option<String> {
    headers.iter().find_map(|h| {
        let (k, v) = h.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// The headers that travel with a body, then the body.
fn mime_of(headers: &[String], body: &str, with_reply_to: bool) -> String {
    let mut mime = String::new();
    for k in [
        "Subject",
        "Reply-To",
        "Content-Type",
        "Content-Transfer-Encoding",
    ] {
        if k == "Reply-To" && !with_reply_to {
            continue;
        }
        if let Some(v) = header(headers, k) {
            let _ = write!(mime, "{k}: {v}\r\n");
        }
    }
    let _ = write!(mime, "\r\n{}", body.replace('\n', "\r\n"));
    mime
}

/// The legitimate mail of the TREC 2007 corpus (its `index` file) that
/// came to a person directly: not list mail, not from the university
/// itself. Its bodies stand for what new contacts write.
fn load_ham(index: &Path) -> Vec<Ham> {
    let Ok(list) = std::fs::read_to_string(index) else {
        return Vec::new();
    };
    let base = index.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    let mut senders = std::collections::HashSet::new();
    for line in list.lines() {
        let Some(("ham", rel)) = line.split_once(' ') else {
            continue;
        };
        // TREC's paths are relative to a directory beside `data/`.
        let path = base.join(rel.trim_start_matches("../"));
        let Some((headers, body)) = read_message(&path) else {
            continue;
        };
        let from = header(&headers, "From").unwrap_or_default().to_lowercase();
        let listy = ["List-Id", "List-Post", "Mailing-List", "X-Mailing-List"]
            .iter()
            .any(|k| header(&headers, k).is_some())
            || header(&headers, "Precedence")
                .is_some_and(|p| p.eq_ignore_ascii_case("list") || p.eq_ignore_ascii_case("bulk"));
        if listy || from.contains("uwaterloo.ca") || body.len() > 200_000 {
            continue;
        }
        let to = [header(&headers, "To"), header(&headers, "Cc")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ");
        let addr = from
            .rsplit_once('<')
            .map_or(from.as_str(), |(_, a)| a.trim_end_matches('>'))
            .trim();
        // The display name as mail-parser reads it (quoted, encoded words).
        let raw_from = header(&headers, "From").unwrap_or_default();
        let raw_from = format!("From: {raw_from}\r\n\r\n");
        let parsed = MessageParser::default().parse(raw_from.as_bytes());
        let first = parsed
            .as_ref()
            .and_then(|m| m.from())
            .and_then(|a| a.first());
        let from_name = first
            .and_then(|a| a.name())
            .map(|n| n.replace(['"', '\\', '\r', '\n'], " ").trim().to_string())
            .filter(|n| !n.is_empty() && !n.contains('@'));
        let plain = addr.len() <= 254
            && addr
                .split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
            && addr
                .chars()
                .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '"' | ',' | '(' | ')'));
        let from_addr = if plain {
            addr.to_string()
        } else {
            String::new()
        };
        // A real sender's name goes with its first message only: its
        // later ones, each sent by another synthetic new contact, would make
        // namesakes of one another.
        let (from_name, from_addr) = if senders.insert(addr.to_string()) {
            (from_name, from_addr)
        } else {
            (None, String::new())
        };
        out.push(Ham {
            body: mime_of(&headers, &body, false),
            to: (!to.to_lowercase().contains("uwaterloo.ca")).then_some(to),
            from_org: org_domain(domain_of(addr)),
            from_name,
            from_addr,
        });
    }
    out
}

fn load_phish(dir: &Path) -> Vec<Phish> {
    let mut files: Vec<PathBuf> = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let Some((headers, body)) = read_message(&f) else {
            continue;
        };
        let Some(from) = header(&headers, "From") else {
            continue;
        };
        let (name, addr) = match from.rsplit_once('<') {
            Some((n, a)) => (
                n.trim().trim_matches('"').to_string(),
                a.trim_end_matches('>').trim().to_lowercase(),
            ),
            None => (String::new(), from.trim().to_lowercase()),
        };
        // The corpus redacts its own mailbox as `phishing@pot` and leaves
        // some From addresses broken: those are not senders anyone sees.
        let valid = addr.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && domain
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        });
        if !valid || addr.ends_with(ORG) {
            continue;
        }
        let to = header(&headers, "To").unwrap_or_default();
        out.push(Phish {
            from_name: name.replace('"', ""),
            from_addr: addr,
            body: mime_of(&headers, &body, true),
            to: (!to.contains("phishing@pot")).then_some(to),
        });
    }
    out
}

fn synthetic_phish(rng: &mut Rng, i: usize) -> Phish {
    let brands = [
        "Microsoft 365",
        "DocuSign",
        "PayPal",
        "Netflix",
        "DHL Express",
        "Wells Fargo",
    ];
    let brand = brands[i % brands.len()];
    let dom = format!(
        "{}{}.{}",
        rng.pick(&SYL),
        rng.below(999),
        rng.pick(&["xyz", "top", "com", "net", "info"])
    );
    let reply = if rng.chance(0.4) {
        format!(
            "Reply-To: help{}@{}\r\n",
            rng.below(99),
            rng.pick(&FREEMAIL)
        )
    } else {
        String::new()
    };
    Phish {
        from_name: brand.to_string(),
        from_addr: format!("no-reply{}@{dom}", rng.below(99)),
        body: format!(
            "{reply}Content-Type: text/html\r\nSubject: Action required: verify your account\r\n\r\n<a href=\"http://{dom}/login\">Verify now</a>\r\n"
        ),
        to: None,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first().map(PathBuf::from) else {
        eprintln!(
            "usage: synth_org OUT_DIR [--days N] [--seed N] [--phish DIR] [--ham TREC_INDEX]"
        );
        std::process::exit(64);
    };
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let days: u64 = opt("--days").and_then(|s| s.parse().ok()).unwrap_or(240);
    let seed: u64 = opt("--seed").and_then(|s| s.parse().ok()).unwrap_or(1);
    let phish_dir = opt("--phish").map(PathBuf::from);
    let mut g = Gen {
        rng: Rng(seed),
        aside: Rng(seed ^ 0x5151_5eed),
        reply_to: None,
        mails: Vec::new(),
        events: Vec::new(),
        seq: 0,
        first_contact_seen: Default::default(),
        wrote: Default::default(),
        next_to: None,
    };
    let phish = phish_dir.as_deref().map(load_phish).unwrap_or_default();
    let ham = opt("--ham")
        .map(|i| load_ham(Path::new(&i)))
        .unwrap_or_default();
    if opt("--ham").is_some() && ham.is_empty() {
        eprintln!("synth_org: --ham: no legitimate mail read from that index");
        std::process::exit(66);
    }
    let mut ham_i = 0usize;

    // Employees.
    let employees: Vec<Person> = (0..40)
        .map(|i| {
            let (f, l) = (FIRST[i], LAST[(i * 7) % 40]);
            Person {
                name: format!("{f} {l}"),
                addr: format!("{}.{}@{ORG}", f.to_lowercase(), l.to_lowercase()),
            }
        })
        .collect();
    // Partner organisations.
    let mut partners: Vec<Partner> = Vec::new();
    while partners.len() < 50 {
        let d = format!(
            "{}{}.{}",
            g.rng.pick(&SYL),
            g.rng.pick(&SYL),
            g.rng.pick(&TLDS)
        );
        let taken: Vec<String> = partners.iter().map(|p| p.domain.clone()).collect();
        if !apart(&d, &taken) || d.starts_with("acme") {
            continue;
        }
        let i = partners.len();
        let hosted = g.rng.chance(0.4);
        let ip = if hosted {
            format!("40.107.{}.{}", g.rng.below(4), 10 + g.rng.below(200))
        } else {
            format!("198.18.{}.{}", i, 10 + g.rng.below(20))
        };
        partners.push(Partner {
            domain: d,
            dmarc: g
                .rng
                .pick::<&str>(&["reject", "reject", "quarantine", "none", ""]),
            small: i % 10 == 9,
            ip,
            selector: format!("s{}", g.rng.below(4)),
            agent: g.rng.pick::<&str>(&AGENTS),
        });
    }
    // Correspondents: 1-4 per partner; three are namesakes of employees.
    let mut contacts: Vec<Contact> = Vec::new();
    for (pi, p) in partners.iter().enumerate() {
        for _ in 0..1 + g.rng.below(4) {
            let (f, l) = (g.rng.pick(&FIRST), g.rng.pick(&LAST));
            let person = Person {
                name: format!("{f} {l}"),
                addr: format!("{}.{}@{}", f.to_lowercase(), l.to_lowercase(), p.domain),
            };
            if contacts.iter().any(|c| c.person.addr == person.addr) {
                continue;
            }
            contacts.push(Contact {
                person,
                partner: pi,
                owner: g.rng.below(employees.len()),
                two_way_since: None,
                sent_to: false,
                received_from: false,
                via_list: g.rng.chance(0.12),
            });
        }
    }
    for (k, ci) in [3usize, 17, 29].iter().enumerate() {
        if let Some(c) = contacts.get_mut(*ci) {
            let e = &employees[k * 5 + 1];
            let p = &partners[c.partner];
            c.person = Person {
                name: e.name.clone(),
                addr: format!("{}@{}", e.name.to_lowercase().replace(' ', "."), p.domain),
            };
        }
    }
    // Employees' own freemail addresses (same display name).
    let personal: Vec<(usize, Person, String)> = (0..10)
        .map(|k| {
            let e = &employees[k * 4 + 2];
            let fm = FREEMAIL[k % FREEMAIL.len()];
            (
                k * 4 + 2,
                Person {
                    name: e.name.clone(),
                    addr: format!("{}{}@{fm}", e.name.to_lowercase().replace(' ', ""), 70 + k),
                },
                format!("209.85.{}.{}", k % 4, 10 + g.rng.below(200)),
            )
        })
        .collect();
    let newsletters: Vec<Person> = (0..8)
        .map(|i| Person {
            name: format!("{} News", g.rng.pick(&SYL)),
            addr: format!("news@{}{}mail.com", g.rng.pick(&SYL), i),
        })
        .collect();
    let contact_start: Vec<u64> = contacts
        .iter()
        .map(|_| {
            if g.rng.chance(0.7) {
                g.rng.below(40) as u64
            } else {
                g.rng.below(days as usize * 3 / 4) as u64
            }
        })
        .collect();
    // Threads: per contact, the last message ids.
    let mut threads: HashMap<usize, Vec<String>> = HashMap::new();
    let mut new_contacts: Vec<(Person, String, usize, bool)> = Vec::new();
    // Unanswered new contacts and the employees they wrote to.
    let mut cold: Vec<(Person, String, Vec<usize>, bool)> = Vec::new();
    let mut phish_i = 0usize;
    let mut taken_domains: Vec<String> = partners.iter().map(|p| p.domain.clone()).collect();
    let attackers = |rng: &mut Rng| {
        format!(
            "{}.{}.{}.{}",
            rng.pick(&[5u32, 45, 91, 103, 185, 194]),
            rng.below(250),
            rng.below(250),
            1 + rng.below(250)
        )
    };

    for day in 0..days {
        let t0 = START + day * DAY;
        let weekend = day % 7 == 2 || day % 7 == 3;
        let work = |rng: &mut Rng| t0 + 7 * 3600 + rng.below(11 * 3600) as u64;
        // Correspondence.
        for ci in 0..contacts.len() {
            if day < contact_start[ci] || weekend || !g.rng.chance(0.22) {
                continue;
            }
            let t = work(&mut g.rng);
            let (owner, person, pi) = (
                contacts[ci].owner,
                contacts[ci].person.clone(),
                contacts[ci].partner,
            );
            let emp = employees[owner].clone();
            let refs = threads.entry(ci).or_default().clone();
            let refs: Vec<String> = refs.iter().rev().take(4).rev().cloned().collect();
            let outbound_first = g.rng.chance(0.5);
            g.reply_to = None;
            let mut ids = Vec::new();
            let t_reply = t + 600 + g.rng.below(6 * 3600) as u64;
            let inbound = |g: &mut Gen, time: u64, refs: &[String], contacts: &mut Vec<Contact>| {
                let c = &contacts[ci];
                let p = &partners[pi];
                let est = c.two_way_since.is_some_and(|s| time >= s + 90 * DAY);
                let (ip, helo, auth) = if c.via_list && g.rng.chance(0.5) {
                    (
                        "192.0.2.50".to_string(),
                        "lists.industry-forum.org".to_string(),
                        Auth::List,
                    )
                } else if g.rng.chance(0.04) {
                    (
                        "192.0.2.80".to_string(),
                        "relay.alumni-forward.org".to_string(),
                        Auth::Forwarded,
                    )
                } else if p.small {
                    (p.ip.clone(), format!("mail.{}", p.domain), Auth::Unsigned)
                } else {
                    (p.ip.clone(), format!("mail.{}", p.domain), Auth::Pass)
                };
                let extra = if auth == Auth::List {
                    "List-Id: Industry forum <forum.industry-forum.org>\r\n".to_string()
                } else if auth == Auth::Pass && g.aside.chance(0.01) {
                    // Answers to go to a colleague at the partner's sister
                    // company (another organisation to us).
                    let base = p.domain.split('.').next().unwrap_or("partner");
                    let office = Person {
                        name: format!("{} {}", g.aside.pick(&OUT_FIRST), g.aside.pick(&OUT_LAST)),
                        addr: format!("office@{base}-group.com"),
                    };
                    let h = format!("Reply-To: \"{}\" <{}>\r\n", office.name, office.addr);
                    g.reply_to = Some(office);
                    h
                } else {
                    String::new()
                };
                let body = if g.rng.chance(0.2) {
                    with_attachment("Re: our project", "Please find the document attached.")
                } else if g.rng.chance(0.3) {
                    plain("Re: our project", "Details at https://portal.example/doc/1")
                } else {
                    plain("Re: our project", "Sounds good, talk soon.")
                };
                let id = g.inbound(
                    time,
                    &person,
                    &[&emp],
                    &ip,
                    &helo,
                    auth,
                    p.dmarc,
                    &p.selector,
                    p.agent,
                    refs,
                    &body,
                    &extra,
                );
                g.label("legit_correspondent", est, &person.addr.clone());
                let c = &mut contacts[ci];
                c.received_from = true;
                if c.sent_to && c.two_way_since.is_none() {
                    c.two_way_since = Some(time);
                }
                g.open(&id, &emp.addr, time, 0.9);
                id
            };
            if outbound_first {
                let id = g.outbound(t, &emp, &[&person], &refs);
                contacts[ci].sent_to = true;
                if contacts[ci].received_from && contacts[ci].two_way_since.is_none() {
                    contacts[ci].two_way_since = Some(t);
                }
                ids.push(id.clone());
                if g.rng.chance(0.8) {
                    let mut r2 = refs.clone();
                    r2.push(id);
                    ids.push(inbound(&mut g, t_reply, &r2, &mut contacts));
                }
            } else {
                let id = inbound(&mut g, t, &refs, &mut contacts);
                ids.push(id.clone());
                if g.rng.chance(0.7) {
                    let mut r2 = refs.clone();
                    r2.push(id);
                    // An answer goes where Reply-To asks.
                    let to = g.reply_to.take().unwrap_or_else(|| person.clone());
                    ids.push(g.outbound(t_reply, &emp, &[&to], &r2));
                    contacts[ci].sent_to = true;
                    if contacts[ci].two_way_since.is_none() {
                        contacts[ci].two_way_since = Some(t_reply);
                    }
                }
            }
            threads.entry(ci).or_default().extend(ids);
        }
        // Employees' own addresses: home → work, sometimes answered.
        for (ei, p, ip) in personal.clone() {
            if g.rng.chance(0.12) {
                let t = t0 + 18 * 3600 + g.rng.below(4 * 3600) as u64;
                let emp = employees[ei].clone();
                let body = plain("note to self", "forwarding this to work");
                let fm = domain_of(&p.addr).to_string();
                let id = g.inbound(
                    t,
                    &p,
                    &[&emp],
                    &ip,
                    &format!("mail.{fm}"),
                    Auth::Pass,
                    "none",
                    "20230601",
                    "",
                    &[],
                    &body,
                    "",
                );
                g.label("legit_personal_freemail", false, &p.addr);
                g.open(&id, &emp.addr, t, 0.95);
                if g.rng.chance(0.5) {
                    g.outbound(t + 3600 * 14, &emp, &[&p], &[id]);
                }
            }
        }
        // Newsletters, weekly, to a third of the employees.
        for (ni, n) in newsletters.clone().iter().enumerate() {
            if day % 7 == (ni % 7) as u64 {
                let t = t0 + 5 * 3600 + g.rng.below(3600) as u64;
                let to: Vec<&Person> = employees.iter().skip(ni % 3).step_by(3).collect();
                let body = plain("This week", "Read online: https://news.example/w");
                let ip = format!("159.135.{}.{}", ni % 2, 20 + g.rng.below(30));
                let id = g.inbound(
                    t,
                    n,
                    &to,
                    &ip,
                    "o1.esp.example",
                    Auth::Pass,
                    "none",
                    "esp",
                    "",
                    &[],
                    &body,
                    "List-Unsubscribe: <https://news.example/u>\r\n",
                );
                g.label("legit_newsletter", false, &n.addr);
                for e in &to {
                    g.open(&id, &e.addr, t, 0.3);
                }
            }
        }
        // New legitimate contacts (customers, suppliers, applicants).
        if !weekend {
            for _ in 0..g.rng.below(3) {
                let t = work(&mut g.rng);
                let (f, l) = (g.rng.pick(&OUT_FIRST), g.rng.pick(&OUT_LAST));
                let (dom, ip, own) = if g.rng.chance(0.3) {
                    let fm = *g.rng.pick(&FREEMAIL);
                    (
                        fm.to_string(),
                        format!("209.85.{}.{}", g.rng.below(4), 10 + g.rng.below(200)),
                        false,
                    )
                } else {
                    let mut d = String::new();
                    for _ in 0..50 {
                        d = format!(
                            "{}{}{}.{}",
                            g.rng.pick(&OUT_SYL),
                            g.rng.pick(&SYL),
                            g.rng.pick(&OUT_SYL),
                            g.rng.pick(&TLDS)
                        );
                        if apart(&d, &taken_domains) {
                            break;
                        }
                    }
                    taken_domains.push(d.clone());
                    let ip = if g.rng.chance(0.5) {
                        format!("40.107.{}.{}", g.rng.below(4), 10 + g.rng.below(200))
                    } else {
                        format!("198.19.{}.{}", g.rng.below(250), 10 + g.rng.below(200))
                    };
                    (d, ip, true)
                };
                // Some write from a role address under a team's name.
                let roles = [
                    ("Sales Team", "info"),
                    ("Accounts Payable", "ap"),
                    ("Customer Service", "hello"),
                    ("Recruiting", "jobs"),
                ];
                let mut person = if own && g.rng.chance(0.15) {
                    let (name, local) = *g.rng.pick(&roles);
                    Person {
                        name: name.to_string(),
                        addr: format!("{local}@{dom}"),
                    }
                } else {
                    Person {
                        name: format!("{f} {l}"),
                        addr: format!(
                            "{}.{}{}@{dom}",
                            f.to_lowercase(),
                            l.to_lowercase(),
                            if own {
                                String::new()
                            } else {
                                g.rng.below(99).to_string()
                            }
                        ),
                    }
                };
                let emp = employees[g.rng.below(employees.len())].clone();
                let auth = if own && g.rng.chance(0.12) {
                    Auth::Unsigned
                } else {
                    Auth::Pass
                };
                let body = if !ham.is_empty() {
                    let h = &ham[ham_i % ham.len()];
                    ham_i += 1;
                    g.next_to = h.to.clone();
                    // The sender's first message comes as that sender,
                    // its links as they were; a later one from a synthetic
                    // person at a synthetic domain.
                    if h.from_addr.is_empty() {
                        h.body_from(&dom)
                    } else {
                        person = Person {
                            name: h.from_name.clone().unwrap_or_default(),
                            addr: h.from_addr.clone(),
                        };
                        h.body.clone()
                    }
                } else if g.rng.chance(0.15) {
                    with_attachment("Inquiry", "Please see my CV attached.")
                } else {
                    plain(
                        "Inquiry",
                        "Hello, I would like to ask about your services. https://www.example/about",
                    )
                };
                let agent = *g.rng.pick(&AGENTS);
                let id = g.inbound(
                    t,
                    &person,
                    &[&emp],
                    &ip,
                    &format!("mail.{dom}"),
                    auth,
                    "none",
                    "k1",
                    agent,
                    &[],
                    &body,
                    "",
                );
                g.label("legit_new_contact", false, &person.addr);
                g.open(&id, &emp.addr, t, 0.7);
                if g.rng.chance(0.4) {
                    g.outbound(t + 7200, &emp, &[&person], std::slice::from_ref(&id));
                    new_contacts.push((person, ip, g.rng.below(40), auth == Auth::Pass));
                } else if g.aside.chance(0.25) {
                    // Unanswered, it writes to someone else (a vendor, a
                    // recruiter working through the organisation).
                    let owner = employees
                        .iter()
                        .position(|e| e.addr == emp.addr)
                        .unwrap_or(0);
                    cold.push((person, ip, vec![owner], auth == Auth::Pass));
                }
            }
            // Cold outreach: an unanswered new contact writes to another
            // person, two to four in all, until someone answers.
            if !cold.is_empty() && g.aside.chance(0.5) {
                let k = g.aside.below(cold.len());
                let (person, ip, written, authd) = cold[k].clone();
                let others: Vec<usize> = (0..employees.len())
                    .filter(|i| !written.contains(i))
                    .collect();
                let to = others[g.aside.below(others.len())];
                let emp = employees[to].clone();
                let t = work(&mut g.aside);
                let body = plain(
                    "Introduction",
                    "Hello, I was told you may be the right person to talk to about this.",
                );
                let id = g.new_contact_writes(t, &person, &emp, &ip, authd, &body);
                if g.aside.chance(0.35) {
                    g.outbound(t + 7200, &emp, &[&person], std::slice::from_ref(&id));
                    new_contacts.push((person, ip, to, authd));
                    cold.swap_remove(k);
                } else if written.len() >= 3 {
                    cold.swap_remove(k);
                } else {
                    cold[k].2.push(to);
                }
            }
            // Follow-ups of earlier new contacts.
            if !new_contacts.is_empty() && g.rng.chance(0.6) {
                let k = g.rng.below(new_contacts.len());
                let (person, ip, owner, authd) = new_contacts[k].clone();
                let t = work(&mut g.rng);
                let emp = employees[owner].clone();
                let body = plain("Follow-up", "Thanks for getting back to me.");
                let id = g.new_contact_writes(t, &person, &emp, &ip, authd, &body);
                g.open(&id, &emp.addr, t, 0.8);
            }
        }
        // Attacks, from day 30.
        if day >= 30 {
            // Spoof of an established correspondent.
            if g.rng.chance(0.35) {
                let est: Vec<usize> = (0..contacts.len())
                    .filter(|i| {
                        contacts[*i]
                            .two_way_since
                            .is_some_and(|s| t0 > s + 30 * DAY)
                    })
                    .collect();
                if !est.is_empty() {
                    let ci = est[g.rng.below(est.len())];
                    let c = &contacts[ci];
                    let (person, emp) = (c.person.clone(), employees[c.owner].clone());
                    let p = &partners[c.partner];
                    let ip = attackers(&mut g.rng);
                    let body = with_attachment(
                        "Updated bank details",
                        "Please use the new account for the open invoice.",
                    );
                    let t = work(&mut g.rng);
                    let id = g.inbound(
                        t,
                        &person,
                        &[&emp],
                        &ip,
                        "mail.example.net",
                        Auth::Spoof,
                        if p.dmarc.is_empty() { "none" } else { p.dmarc },
                        "x",
                        "",
                        &[],
                        &body,
                        "",
                    );
                    g.label("attack_spoof", false, "");
                    let _ = id;
                }
            }
            // A correspondent's mailbox taken over: authenticated mail from
            // the partner's own MTA with its own DKIM key, but another mail
            // client and Reply-To to the attacker.
            if g.rng.chance(0.15) {
                let est: Vec<usize> = (0..contacts.len())
                    .filter(|i| {
                        contacts[*i]
                            .two_way_since
                            .is_some_and(|s| t0 > s + 30 * DAY)
                            && !partners[contacts[*i].partner].small
                    })
                    .collect();
                if !est.is_empty() {
                    let ci = est[g.rng.below(est.len())];
                    let c = &contacts[ci];
                    let (person, emp) = (c.person.clone(), employees[c.owner].clone());
                    let p = &partners[c.partner];
                    let agent = if p.agent == "Roundcube Webmail/1.6" {
                        "PHPMailer 6.8"
                    } else {
                        "Roundcube Webmail/1.6"
                    };
                    let reply = format!(
                        "Reply-To: {}.{}@{}\r\n",
                        person.name.to_lowercase().replace(' ', ""),
                        g.rng.below(99),
                        g.rng.pick(&FREEMAIL)
                    );
                    let t = work(&mut g.rng);
                    let body = with_attachment(
                        "Updated payment details",
                        "Our bank details changed, please use the attached.",
                    );
                    let (ip, helo, dmarc, sel) = (
                        p.ip.clone(),
                        format!("mail.{}", p.domain),
                        p.dmarc,
                        p.selector.clone(),
                    );
                    g.inbound(
                        t,
                        &person,
                        &[&emp],
                        &ip,
                        &helo,
                        Auth::Pass,
                        dmarc,
                        &sel,
                        agent,
                        &[],
                        &body,
                        &reply,
                    );
                    g.label("attack_compromised", false, "");
                }
            }
            // Lookalike of the enterprise or a correspondent's domain.
            if g.rng.chance(0.35) {
                let class = g.rng.below(13);
                let t = work(&mut g.rng);
                let (victim_name, local, base, emp) = if g.rng.chance(0.3) {
                    let e = employees[g.rng.below(40)].clone();
                    let local = e.addr.split('@').next().unwrap_or("ceo").to_string();
                    (
                        e.name.clone(),
                        local,
                        ORG.to_string(),
                        employees[g.rng.below(40)].clone(),
                    )
                } else {
                    // A correspondent's: one the enterprise already writes to.
                    let active: Vec<usize> = (0..contacts.len())
                        .filter(|i| contacts[*i].sent_to)
                        .collect();
                    let c = &contacts[active[g.rng.below(active.len())]];
                    let local = c.person.addr.split('@').next().unwrap_or("x").to_string();
                    (
                        c.person.name.clone(),
                        local,
                        partners[c.partner].domain.clone(),
                        employees[c.owner].clone(),
                    )
                };
                let (dom, _class) = twist(&mut g.rng, &base, class);
                let person = Person {
                    name: victim_name,
                    addr: format!("{local}@{dom}"),
                };
                let ip = attackers(&mut g.rng);
                let auth = if g.rng.chance(0.7) {
                    Auth::Pass
                } else {
                    Auth::Unsigned
                };
                let body = with_attachment(
                    "Invoice",
                    "Please find the invoice attached, payment due today.",
                );
                let id = g.inbound(
                    t,
                    &person,
                    &[&emp],
                    &ip,
                    &format!("mail.{dom}"),
                    auth,
                    "none",
                    "s1",
                    "",
                    &[],
                    &body,
                    "",
                );
                g.label("attack_lookalike", false, "");
                g.open(&id, &emp.addr, t, 0.3);
            }
            // Display-name impersonation of an employee from freemail.
            if g.rng.chance(0.3) {
                // An employee whose name the enterprise's own mail shows.
                let senders: Vec<usize> = (0..employees.len())
                    .filter(|i| g.wrote.contains(&employees[*i].addr))
                    .collect();
                let victim = employees[senders[g.rng.below(senders.len())]].clone();
                // Someone else: a name shown to its own owner deceives no one.
                let mut target = employees[10 + g.rng.below(30)].clone();
                while target.addr == victim.addr {
                    target = employees[10 + g.rng.below(30)].clone();
                }
                let fm = *g.rng.pick(&FREEMAIL);
                let person = Person {
                    name: victim.name.clone(),
                    addr: format!(
                        "{}.office{}@{fm}",
                        victim.name.to_lowercase().replace(' ', ""),
                        g.rng.below(999)
                    ),
                };
                let t = work(&mut g.rng);
                let ip = format!("209.85.{}.{}", g.rng.below(4), 10 + g.rng.below(200));
                let body = plain(
                    "Urgent request",
                    "Are you at your desk? I need you to buy gift cards today.",
                );
                let id = g.inbound(
                    t,
                    &person,
                    &[&target],
                    &ip,
                    &format!("mail.{fm}"),
                    Auth::Pass,
                    "none",
                    "20230601",
                    "",
                    &[],
                    &body,
                    "",
                );
                g.label("attack_display_name", false, "");
                g.open(&id, &target.addr, t, 0.5);
            }
            // First-contact phishing.
            for _ in 0..1 + g.rng.below(2) {
                let ph = if phish.is_empty() {
                    synthetic_phish(&mut g.rng, phish_i)
                } else {
                    let p = &phish[phish_i % phish.len()];
                    Phish {
                        from_name: p.from_name.clone(),
                        from_addr: p.from_addr.clone(),
                        body: p.body.clone(),
                        to: p.to.clone(),
                    }
                };
                phish_i += 1;
                let t = work(&mut g.rng);
                let target = employees[g.rng.below(40)].clone();
                let person = Person {
                    name: ph.from_name.clone(),
                    addr: ph.from_addr.clone(),
                };
                let ip = if g.rng.chance(0.2) {
                    format!("40.107.{}.{}", g.rng.below(4), 10 + g.rng.below(200))
                } else {
                    attackers(&mut g.rng)
                };
                let auth = match g.rng.below(10) {
                    0..=4 => Auth::Pass,
                    5..=7 => Auth::Unsigned,
                    _ => Auth::Spoof,
                };
                let dom = domain_of(&ph.from_addr).to_string();
                g.next_to = ph.to.clone();
                let id = g.inbound(
                    t,
                    &person,
                    &[&target],
                    &ip,
                    &format!("mail.{dom}"),
                    auth,
                    "none",
                    "s1",
                    "",
                    &[],
                    &ph.body,
                    "",
                );
                g.label("attack_phish", false, "");
                g.open(&id, &target.addr, t, 0.15);
                if g.rng.chance(0.1) {
                    g.junk(&id, &target.addr, t);
                }
            }
        }
    }

    g.mails.sort_by_key(|m| m.time);
    let mail_dir = out.join("mail");
    std::fs::create_dir_all(&mail_dir).expect("create OUT_DIR/mail");
    let mut labels = String::new();
    for (i, m) in g.mails.iter().enumerate() {
        std::fs::write(mail_dir.join(format!("{i:06}.eml")), &m.text).expect("write mail");
        if m.category != "outbound" {
            let _ = writeln!(
                labels,
                "{}\t{}\t{}",
                m.id,
                m.category,
                u8::from(m.established)
            );
        }
    }
    std::fs::write(out.join("labels.tsv"), labels).expect("write labels");
    g.events.sort();
    let mut ev = g.events.join("\n");
    ev.push('\n');
    std::fs::write(out.join("events.jsonl"), ev).expect("write events");
    let state = out.join("state");
    std::fs::write(
        out.join("sra-milter.toml"),
        format!(
            "state_dir = \"{}\"\nenterprise_domains = [\"{ORG}\"]\ninternal_networks = [\"10.0.0.0/8\"]\n\n[auth]\ntrusted_authserv_ids = [\"{MX}\"]\n",
            state.display()
        ),
    )
    .expect("write config");
    let inbound = g.mails.iter().filter(|m| m.category != "outbound").count();
    eprintln!(
        "synth_org: {} messages ({} inbound, {} outbound), {} events, {} phishing and {} legitimate bodies from the corpus, in {}",
        g.mails.len(),
        inbound,
        g.mails.len() - inbound,
        g.events.len(),
        phish.len(),
        ham.len(),
        out.display()
    );
}
