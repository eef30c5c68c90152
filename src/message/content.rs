//! What a message's text says that the rating needs, read with mail-parser
//! in one pass: the `From:` address and display name, `Reply-To:`,
//! Message-ID and the thread it answers, the Authentication-Results of
//! upstream hosts, and whether the body carries an attachment or a URL.

use super::address::{message_ids_in, normalize_message_id};
use crate::vocab::clean_address;
use mail_parser::{HeaderValue, MessageParser};

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
        let (has_attachment, has_url) = message_features(msg);
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
            has_attachment,
            has_url,
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

/// `(has_attachment, has_url)` of a parsed message.
fn message_features(msg: &mail_parser::Message<'_>) -> (bool, bool) {
    let has_attachment = msg.attachment_count() > 0;
    let has_url = msg
        .text_bodies()
        .chain(msg.html_bodies())
        .filter_map(|p| p.text_contents())
        .any(contains_url);
    (has_attachment, has_url)
}

fn contains_url(text: &str) -> bool {
    let bytes = text.as_bytes();
    ["http://", "https://", "www."].iter().any(|needle| {
        let n = needle.as_bytes();
        bytes.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
    })
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
}
