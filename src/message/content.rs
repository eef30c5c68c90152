//! What a message's text says that the rating needs, read with mail-parser
//! in one pass: the `From:` address and display name, `Reply-To:`,
//! Message-ID and the thread it answers, the Authentication-Results of
//! upstream hosts, the To/Cc addresses, and what the body carries: an
//! attachment, URLs (and the organisations they point to), HTML without a
//! plain-text alternative.

use super::address::{message_ids_in, normalize_message_id};
use crate::vocab::{clean_address, org_domain};
use mail_parser::{Address, HeaderValue, MessageParser, PartType};

/// The rating's view of a message's text.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Content {
    /// The first `From:` address, lower-cased (RFC 5322 §3.6.2 allows
    /// several authors; the first is the one readers see).
    pub header_from: Option<String>,
    /// Its display name, as written.
    pub display_name: Option<String>,
    /// The first `Reply-To:` address.
    pub reply_to: Option<String>,
    pub message_id: Option<String>,
    /// Identifiers from In-Reply-To and References, nearest first.
    pub references: Vec<String>,
    /// Authentication-Results values in message order.
    pub auth_results: Vec<String>,
    pub has_attachment: bool,
    pub has_url: bool,
    /// The body is HTML with no plain-text alternative.
    pub html_only: bool,
    /// The organisations (registrable domains, or IP literals) that the
    /// body's `http(s)://` URLs point to, in order of appearance, at most
    /// [`MAX_LINK_ORGS`].
    pub link_orgs: Vec<String>,
    /// The `To:` and `Cc:` addresses, lower-cased, at most
    /// [`MAX_ADDRESSED`]: whom the message says it is for.
    pub addressed: Vec<String>,
    /// `List-Id:` (RFC 2919): the message came through a mailing list.
    pub list_id: Option<String>,
    /// The mail client (`User-Agent:` or `X-Mailer:`), its name without
    /// versions: `mozilla thunderbird`.
    pub mail_client: Option<String>,
}

/// A mail client's name without its version: the leading words, lower
/// case, up to the first one with a digit, slash or parenthesis (at most
/// three words).
pub fn client_name(header: &str) -> Option<String> {
    let words: Vec<String> = header
        .split_whitespace()
        .take_while(|w| {
            !w.contains(|c: char| c.is_ascii_digit() || c == '/' || c == '(' || c == ';')
        })
        .take(3)
        .map(|w| w.to_lowercase())
        .collect();
    let name = words.join(" ");
    (!name.is_empty()).then(|| name.chars().take(60).collect())
}

/// Longest header value kept for `list_id`.
const MAX_KEPT_HEADER: usize = 200;
/// Distinct link organisations kept per message.
pub const MAX_LINK_ORGS: usize = 16;
/// To/Cc addresses kept per message.
pub const MAX_ADDRESSED: usize = 100;

impl Content {
    /// Reads a parsed message.
    pub fn read(msg: &mail_parser::Message<'_>) -> Content {
        let (header_from, display_name) = match msg.from().and_then(|a| a.first()) {
            Some(a) => (
                a.address().and_then(clean_address),
                a.name()
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty()),
            ),
            None => (None, None),
        };
        // Nearest first: In-Reply-To, then References newest to oldest.
        let mut references = ids(msg.in_reply_to());
        for id in ids(msg.references()).into_iter().rev() {
            if !references.contains(&id) {
                references.push(id);
            }
        }
        let body = body_features(msg);
        let addressed = [msg.to(), msg.cc()]
            .into_iter()
            .flatten()
            .flat_map(addresses)
            .take(MAX_ADDRESSED)
            .collect();
        Content {
            header_from,
            display_name,
            reply_to: msg
                .reply_to()
                .and_then(|a| a.first())
                .and_then(|a| a.address())
                .and_then(clean_address),
            message_id: msg.message_id().and_then(normalize_message_id),
            references,
            auth_results: msg
                .headers_raw()
                .filter(|(n, _)| n.eq_ignore_ascii_case(crate::auth::AR_HEADER))
                .map(|(_, v)| v.trim().to_string())
                .collect(),
            has_attachment: body.has_attachment,
            has_url: body.has_url,
            html_only: body.html_only,
            link_orgs: body.link_orgs,
            addressed,
            list_id: msg
                .headers_raw()
                .find(|(n, _)| n.eq_ignore_ascii_case("List-Id"))
                .map(|(_, v)| v.trim().chars().take(MAX_KEPT_HEADER).collect()),
            mail_client: msg
                .headers_raw()
                .find(|(n, _)| {
                    n.eq_ignore_ascii_case("User-Agent") || n.eq_ignore_ascii_case("X-Mailer")
                })
                .and_then(|(_, v)| client_name(v)),
        }
    }

    /// The results of the nearest trusted upstream's Authentication-Results
    /// (`trusted_ids`), read for this message's From domain.
    pub fn upstream_auth(&self, trusted_ids: &[String]) -> Option<crate::auth::AuthSummary> {
        crate::auth::trusted_results(
            self.auth_results.iter().map(String::as_str),
            trusted_ids,
            self.header_from.as_deref().map(crate::vocab::domain_of),
        )
    }

    /// Reads raw bytes (possibly truncated). Bytes that do not parse as a
    /// message still say whether they carry a URL.
    pub fn parse(raw: &[u8]) -> Content {
        match MessageParser::default().parse(raw) {
            Some(m) => Content::read(&m),
            None => Content {
                has_url: contains_url(&String::from_utf8_lossy(raw)),
                ..Content::default()
            },
        }
    }
}

fn ids(v: &HeaderValue<'_>) -> Vec<String> {
    match v {
        HeaderValue::Text(t) => message_ids_in(&format!("<{t}>")),
        HeaderValue::TextList(l) => l.iter().filter_map(|t| normalize_message_id(t)).collect(),
        _ => Vec::new(),
    }
}

/// The addresses of an address header (groups flattened), cleaned.
fn addresses<'a>(a: &'a Address<'_>) -> impl Iterator<Item = String> + 'a {
    a.iter().filter_map(|x| x.address().and_then(clean_address))
}

/// What the body carries.
#[derive(Default)]
struct BodyFeatures {
    has_attachment: bool,
    has_url: bool,
    html_only: bool,
    link_orgs: Vec<String>,
}

fn body_features(msg: &mail_parser::Message<'_>) -> BodyFeatures {
    let mut f = BodyFeatures {
        has_attachment: msg.attachment_count() > 0,
        ..BodyFeatures::default()
    };
    // mail-parser lists an HTML part among the text bodies when there is no
    // plain-text alternative.
    let mut texts = 0;
    let mut htmls = 0;
    for p in msg.text_bodies() {
        match p.body {
            PartType::Html(_) => htmls += 1,
            PartType::Text(_) => texts += 1,
            _ => {}
        }
    }
    f.html_only = htmls > 0 && texts == 0;
    // Each body part once: an HTML part can be listed as both.
    let mut ids: Vec<u32> = msg
        .text_body
        .iter()
        .chain(&msg.html_body)
        .copied()
        .collect();
    ids.sort_unstable();
    ids.dedup();
    for text in ids
        .into_iter()
        .filter_map(|id| msg.part(id))
        .filter_map(|p| p.text_contents())
    {
        // The URL scan says whether it met a scheme; only `www.` is left.
        let schemes = link_orgs(text, &mut f.link_orgs);
        f.has_url = f.has_url || schemes || find_ascii_ci(text.as_bytes(), b"www.").is_some();
    }
    f
}

/// Adds the organisations that the `http://` and `https://` URLs of
/// `text` point to. The host is what follows the scheme up to the path,
/// after any `user@` (`https://bank.example@evil.example/` goes to
/// evil.example); IP literals are kept as they are. Returns whether it met
/// an `http://` or `https://` (it does not look once `out` is full).
fn link_orgs(text: &str, out: &mut Vec<String>) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut schemes = false;
    while out.len() < MAX_LINK_ORGS {
        let Some(p) = find_ascii_ci(&bytes[i..], b"http") else {
            break;
        };
        let mut s = i + p + 4;
        if bytes.get(s).is_some_and(|c| c.eq_ignore_ascii_case(&b's')) {
            s += 1;
        }
        if !bytes[s..].starts_with(b"://") {
            i = s;
            continue;
        }
        schemes = true;
        let start = s + 3;
        let end = bytes[start..]
            .iter()
            .position(|c| {
                matches!(
                    c,
                    b'/' | b'?' | b'#' | b'"' | b'\'' | b'<' | b'>' | b'\\' | b')' | b']'
                ) || c.is_ascii_whitespace()
            })
            .map_or(bytes.len(), |e| start + e);
        // Both ends sit next to ASCII bytes: character boundaries.
        let authority = &text[start..end];
        i = end;
        let host = authority.rsplit('@').next().unwrap_or("");
        let host = if host.starts_with('[') {
            host.split(']').next().unwrap_or("").trim_start_matches('[')
        } else {
            host.split(':').next().unwrap_or("")
        };
        let host = host.trim_end_matches('.').to_lowercase();
        if host.len() < 3 || host.len() > 253 || !(host.contains('.') || host.contains(':')) {
            continue;
        }
        let org = if host.parse::<std::net::IpAddr>().is_ok() {
            host
        } else {
            org_domain(&host)
        };
        if !out.contains(&org) {
            out.push(org);
        }
    }
    schemes
}

/// The first position of an ASCII needle, ignoring ASCII case.
fn find_ascii_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

fn contains_url(text: &str) -> bool {
    ["http://", "https://", "www."]
        .iter()
        .any(|needle| find_ascii_ci(text.as_bytes(), needle.as_bytes()).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(value: &str) -> (Option<String>, Option<String>) {
        let c = Content::parse(format!("From: {value}\r\n\r\n").as_bytes());
        (c.header_from, c.display_name)
    }

    fn body_features(raw: &[u8]) -> (bool, bool) {
        let c = Content::parse(raw);
        (c.has_attachment, c.has_url)
    }

    fn from_address(value: &str) -> Option<String> {
        from(value).0
    }

    #[test]
    fn from_address_handles_names_and_encoded_words() {
        assert_eq!(
            from_address("\"Doe, Jane\" <Jane.Doe@Example.ORG>").as_deref(),
            Some("jane.doe@example.org")
        );
        assert_eq!(
            from_address("=?utf-8?q?J=C3=BCrgen?= <j@example.de>").as_deref(),
            Some("j@example.de")
        );
        assert_eq!(
            from_address("plain@example.net").as_deref(),
            Some("plain@example.net")
        );
        assert_eq!(from_address("undisclosed-recipients:;"), None);
        assert_eq!(from_address(""), None);
        assert_eq!(
            from("\"Jane Doe\" <jane@example.org>"),
            (Some("jane@example.org".into()), Some("Jane Doe".into()))
        );
    }

    #[test]
    fn thread_and_authentication_results_are_read() {
        let raw = b"From: a@b.example\r\nMessage-ID: <m1@b.example>\r\nIn-Reply-To: <p2@x>\r\nReferences: <p0@x> <p1@x> <p2@x>\r\nAuthentication-Results: mx.up; spf=pass\r\n\r\nhi\r\n";
        let c = Content::parse(raw);
        assert_eq!(c.message_id.as_deref(), Some("m1@b.example"));
        assert_eq!(c.references, ["p2@x", "p1@x", "p0@x"]);
        assert_eq!(c.auth_results, ["mx.up; spf=pass"]);
    }

    #[test]
    fn body_features_find_attachments_and_urls() {
        let plain = b"From: a@b.example\r\nSubject: x\r\n\r\nhello there\r\n";
        assert_eq!(body_features(plain), (false, false));
        let url = b"From: a@b.example\r\n\r\nsee HTTPS://example.org/x\r\n";
        assert_eq!(body_features(url), (false, true));
        let att = b"From: a@b.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--XX\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--XX--\r\n";
        assert_eq!(body_features(att), (true, false));
        // Garbage never panics.
        let _ = body_features(b"\xff\xfe\x00\r\n\r\n\r\n--");
        let _ = body_features(b"");
    }

    #[test]
    fn html_without_a_plain_text_alternative_is_html_only() {
        let html = b"From: a@b.example\r\nMIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n<p>Hi</p>\r\n";
        assert!(Content::parse(html).html_only);
        let alt = b"From: a@b.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"A\"\r\n\r\n--A\r\nContent-Type: text/plain\r\n\r\nHi\r\n--A\r\nContent-Type: text/html\r\n\r\n<p>Hi</p>\r\n--A--\r\n";
        assert!(!Content::parse(alt).html_only);
        let plain = b"From: a@b.example\r\n\r\nHi\r\n";
        assert!(!Content::parse(plain).html_only);
    }

    #[test]
    fn link_organisations_are_read_from_every_url() {
        let raw = b"From: a@b.example\r\nMIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n<a href=\"https://login.Bank.co.uk/x?y\">bank</a> <a href='http://paypal.com@evil.example:8080/p'>p</a> https://192.0.2.7/a HTTP://[2001:db8::1]/z https://www.bank.co.uk. http://x https:// httpsfoo\r\n";
        let c = Content::parse(raw);
        assert_eq!(
            c.link_orgs,
            ["bank.co.uk", "evil.example", "192.0.2.7", "2001:db8::1"]
        );
        assert!(c.has_url);
        // A multi-byte letter next to a URL cuts no character in two.
        let c =
            Content::parse("From: a@b.example\r\n\r\nhttps://ö.example/ä http://ü\r\n".as_bytes());
        assert_eq!(c.link_orgs, ["ö.example"]);
        // Bounded.
        let many: String = (0..100).map(|i| format!("http://d{i}.example/ ")).collect();
        let c = Content::parse(format!("From: a@b.example\r\n\r\n{many}\r\n").as_bytes());
        assert_eq!(c.link_orgs.len(), MAX_LINK_ORGS);
    }

    #[test]
    fn to_and_cc_addresses_are_read() {
        let raw = b"From: a@b.example\r\nTo: \"Jo\" <Jo@Acme.Example>, team: x@acme.example, y@z.example;\r\nCc: c@d.example\r\n\r\nhi\r\n";
        assert_eq!(
            Content::parse(raw).addressed,
            [
                "jo@acme.example",
                "x@acme.example",
                "y@z.example",
                "c@d.example"
            ]
        );
        let bcc = b"From: a@b.example\r\nTo: undisclosed-recipients:;\r\n\r\nhi\r\n";
        assert!(Content::parse(bcc).addressed.is_empty());
    }
}
