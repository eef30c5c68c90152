//! The frame of every console page, and the small pieces pages share.
//! HTML is written with `maud`, which escapes every value it is given.

use super::access::Viewer;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

pub const CSS: &str = include_str!("console.css");

/// The navigation: (path, label).
const NAV: [(&str, &str); 5] = [
    ("/", "Overview"),
    ("/verdicts", "Verdicts"),
    ("/movers", "Movers"),
    ("/overrides", "Overrides"),
    ("/whatif", "What if"),
];

/// A whole page.
pub fn page(title: &str, here: &str, viewer: Option<&Viewer>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — sra-milter" }
                link rel="stylesheet" href="/static/console.css";
            }
            body {
                header {
                    span.brand { "sra-milter" }
                    @if viewer.is_some() {
                        nav {
                            @for (path, label) in NAV {
                                a href=(path) class=[(here == path).then_some("here")] { (label) }
                            }
                        }
                        form method="get" action="/search" role="search" {
                            input type="search" name="q" placeholder="sender, domain or MTA IP"
                                aria-label="Search a sender, domain or MTA";
                            button type="submit" { "Search" }
                        }
                    }
                    @if let Some(v) = viewer.filter(|v| v.logged_in) {
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(v.csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// An HTML answer with the console's headers: no caching, no framing, no
/// script, styles from the console only.
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut r = (status, markup.into_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(h);
    r
}

/// The headers every console answer carries.
pub fn secure(h: &mut axum::http::HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// A redirect after a form (303: the browser follows with GET).
pub fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    secure(r.headers_mut());
    r
}

/// A page that says what went wrong.
pub fn problem(status: StatusCode, viewer: Option<&Viewer>, message: &str) -> Response {
    respond(
        status,
        page(
            "Problem",
            "",
            viewer,
            html! { h1 { "Problem" } p.error { (message) } p { a href="/" { "Back to the overview" } } },
        ),
    )
}

/// A query-string value, percent-encoded.
pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The page of a sender, domain or MTA key as the store names them (an
/// MTA is an IPv4 address or an IPv6 /64).
pub fn subject_href(key: &str) -> String {
    let ip = key.split('/').next().unwrap_or(key);
    if ip.parse::<std::net::IpAddr>().is_ok() {
        format!("/mta?key={}", enc(ip))
    } else if key.contains('@') {
        format!("/sender?key={}", enc(key))
    } else {
        format!("/domain?key={}", enc(key))
    }
}

/// A class (or `outbound`) as a coloured label.
pub fn badge(class: &str) -> Markup {
    html! { span class={ "class " (class) } { (class) } }
}

/// Unix seconds as UTC `YYYY-MM-DD HH:MM`, or `never`.
pub fn when(t: u64) -> String {
    if t == 0 {
        return "never".into();
    }
    let s = crate::vocab::rfc3339(t);
    s.get(..16).unwrap_or(&s).replace('T', " ")
}

/// A signed number of points.
pub fn points(p: f64) -> String {
    if p.abs() < 0.05 {
        "0.0".into()
    } else if p > 0.0 {
        format!("+{p:.1}")
    } else {
        format!("{p:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_links_encoded() {
        let v = Viewer {
            csrf: "c".into(),
            bearer: false,
            logged_in: true,
        };
        let html = page("<x>", "/", Some(&v), html! { p { ("<script>") } }).into_string();
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"));
        assert!(html.contains("&lt;x&gt; — sra-milter"));
        assert_eq!(
            subject_href("a+b@x.example"),
            "/sender?key=a%2Bb%40x.example"
        );
        assert_eq!(subject_href("192.0.2.1"), "/mta?key=192.0.2.1");
        assert_eq!(subject_href("2001:db8::/64"), "/mta?key=2001%3Adb8%3A%3A");
        assert_eq!(subject_href("x.example"), "/domain?key=x.example");
        assert_eq!(when(0), "never");
        assert_eq!(when(86400), "1970-01-02 00:00");
    }
}
