//! What the rating needs from a message's text, read with mail-parser:
//! the `From:` address, and whether the body carries an attachment or a URL.

use mail_parser::MessageParser;

/// The first address of a `From:` header value, lower-cased (RFC 5322
/// §3.6.2 allows several authors; the first is the one readers see).
pub fn from_address(value: &str) -> Option<String> {
    from_parts(value).0
}

/// The first address and display name of an address header value
/// (`From:`, `Reply-To:`).
pub fn from_parts(value: &str) -> (Option<String>, Option<String>) {
    let raw = format!("From: {value}\r\n\r\n");
    let Some(msg) = MessageParser::new().parse_headers(raw.as_bytes()) else {
        return (None, None);
    };
    let Some(first) = msg.from().and_then(|a| a.first()) else {
        return (None, None);
    };
    let addr = first.address().and_then(crate::identity::clean_address);
    let name = first
        .name()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    (addr, name)
}

/// `(has_attachment, has_url)` of a raw message (possibly truncated).
pub fn body_features(raw: &[u8]) -> (bool, bool) {
    match MessageParser::default().parse(raw) {
        Some(msg) => message_features(&msg),
        None => (false, contains_url(&String::from_utf8_lossy(raw))),
    }
}

/// `(has_attachment, has_url)` of a parsed message.
pub fn message_features(msg: &mail_parser::Message<'_>) -> (bool, bool) {
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
            from_parts("\"Jane Doe\" <jane@example.org>"),
            (Some("jane@example.org".into()), Some("Jane Doe".into()))
        );
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
