//! The operator's console, from the outside: the real daemon binary with a
//! token, mail through its milter socket, and the pages driven in a real
//! headless Chromium through chromedriver (Debian's `chromium` and
//! `chromium-driver`, installed by scripts/test.sh). Each page's
//! screenshot is saved under the target directory
//! (`console-screenshots/`).

mod common;
mod support;

use common::{send, Mail};
use fantoccini::{Client, ClientBuilder, Locator};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::{free_port, spawn_listening, write_config};

const BIN: &str = env!("CARGO_BIN_EXE_sra-milter");
const TOKEN: &str = "console-token-0123456789abcdef";

/// A daemon process, killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver in a process group of its own: dropped, the whole group
/// goes, the browsers it started too (a failed test leaves none behind).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

/// One raw HTTP/1.1 exchange: (status, head, body).
fn http(port: u16, request: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (
        resp[9..12].parse().unwrap(),
        head.to_string(),
        body.to_string(),
    )
}

fn get(port: u16, path: &str, extra: &str) -> (u16, String, String) {
    http(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n"),
    )
}

fn post(port: u16, path: &str, extra: &str, form: &str) -> (u16, String, String) {
    http(
        port,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        ),
    )
}

fn explain_json(config: &Path, sender: &str) -> serde_json::Value {
    let out = Command::new(BIN)
        .args(["explain", "-c"])
        .arg(config)
        .args(["--sender", sender, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn screenshots() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// chromedriver on a free port, and a headless Chromium session through it.
async fn browser(log: &Path) -> (Driver, Client) {
    use std::os::unix::process::CommandExt;
    let port = free_port();
    let driver = spawn_listening(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0),
        port,
        log,
        Duration::from_secs(20),
    );
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1100"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a chromium session through chromedriver");
    (Driver(driver), client)
}

/// Types `text` into the element `css` selects.
async fn type_into(c: &Client, css: &str, text: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

/// Clicks the element `css` selects.
async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    std::fs::write(screenshots().join(name), png).unwrap();
}

/// Waits (up to 10 s) for `check` to pass on the page's heading: a click
/// that submits a form returns before the next page has loaded.
async fn h1_until(c: &Client, check: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        if let Ok(e) = c.find(Locator::Css("h1")).await {
            if let Ok(t) = e.text().await {
                if check(&t) {
                    return t;
                }
                last = t;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the heading stayed {last:?}");
}

async fn path_of(c: &Client) -> String {
    let u = c.current_url().await.unwrap();
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    }
}

/// Waits (up to 10 s) for the browser to be at a path that `check` accepts.
async fn at(c: &Client, check: impl Fn(&str) -> bool) -> String {
    let mut p = String::new();
    for _ in 0..100 {
        p = path_of(c).await;
        if check(&p) {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the browser stayed at {p}");
}

#[tokio::test(flavor = "multi_thread")]
async fn console_pages_search_and_overrides_in_chromium_behind_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let (milter, admin) = (free_port(), free_port());
    let config = dir.path().join("sra.toml");
    write_config(
        &config,
        milter,
        &dir.path().join("state"),
        "monitor",
        &format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken_file = \"{}\"\n[lists]\nblock = [\"203.0.113.0/24\"]\n",
            token.display()
        ),
    );
    let _daemon = Proc(spawn_listening(
        Command::new(BIN).args(["run", "-c"]).arg(&config),
        milter,
        &dir.path().join("daemon.log"),
        Duration::from_secs(10),
    ));
    let addr: SocketAddr = format!("127.0.0.1:{milter}").parse().unwrap();
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Traffic: a correspondent Alice writes to and who answers, a stranger,
    // and a blocked network that monitor mode lets through.
    send(
        addr,
        &Mail::outbound("carol@partner.example", "o1@example.com"),
    )
    .await;
    send(
        addr,
        &Mail::inbound("carol@partner.example", "i1@partner.example")
            .header("In-Reply-To", "<o1@example.com>"),
    )
    .await;
    send(
        addr,
        &Mail::inbound("dave@other.example", "d1@other.example"),
    )
    .await;
    let mut blocked = Mail::inbound("x@bad.example", "b1@bad.example");
    blocked.ip = "203.0.113.5".parse().unwrap();
    send(addr, &blocked).await;

    // Without the token: a browser is sent to the login page, a script
    // gets 401, metrics too; health stays open for probes.
    let (s, head, _) = get(admin, "/", "Accept: text/html\r\n");
    assert_eq!(s, 303);
    assert!(head.contains("location: /login"), "{head}");
    assert_eq!(get(admin, "/", "").0, 401);
    assert_eq!(get(admin, "/sender?key=carol%40partner.example", "").0, 401);
    assert_eq!(get(admin, "/metrics", "").0, 401);
    assert_eq!(get(admin, "/health", "").0, 200);
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    assert_eq!(get(admin, "/metrics", &bearer).0, 200);
    let (s, _, body) = get(admin, "/verdicts", &bearer);
    assert_eq!(s, 200);
    assert!(body.contains("dave@other.example"), "{body}");
    assert_eq!(
        post(
            admin,
            "/overrides",
            "",
            "target=dave%40other.example&class=trusted&reason=x"
        )
        .0,
        401
    );
    // A logged-in browser whose form lacks the session's CSRF token (a
    // page elsewhere posting through it) is refused, and nothing changes.
    let (s, head, _) = post(admin, "/login", "", &format!("token={TOKEN}"));
    assert_eq!(s, 303, "{head}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("sra_console="), "{cookie}");
    let with_cookie = format!("Cookie: {cookie}\r\n");
    assert_eq!(get(admin, "/", &with_cookie).0, 200);
    let forged = "csrf=0000&target=dave%40other.example&class=trusted&reason=x";
    assert_eq!(post(admin, "/overrides", &with_cookie, forged).0, 403);
    assert!(explain_json(&config, "dave@other.example")
        .get("override")
        .is_none());
    assert_eq!(
        post(admin, "/login", "", "token=wrong-token-0123456789").0,
        401
    );

    // The pages in Chromium.
    let (_driver, c) = browser(&dir.path().join("chromedriver.log")).await;
    let base = format!("http://127.0.0.1:{admin}");
    c.goto(&format!("{base}/")).await.unwrap();
    at(&c, |p| p == "/login").await;
    shot(&c, "login.png").await;
    type_into(&c, "input[name=token]", TOKEN).await;
    click(&c, "form[action='/login'] button").await;
    at(&c, |p| p == "/").await;
    h1_until(&c, |h| h == "Overview").await;
    let src = c.source().await.unwrap();
    assert!(src.contains("Monitor-only mode"), "{src}");
    assert!(src.contains("would_reject"), "the held-back verdict: {src}");
    assert!(c.find(Locator::Css("svg.hourly rect.bar")).await.is_ok());
    // The hour by action shows what monitor mode held back, lighter.
    assert!(c
        .find(Locator::Css("svg.hourly rect.bar.malicious.would"))
        .await
        .is_ok());
    shot(&c, "overview.png").await;

    // Search finds the sender; its page shows factors, contributions and
    // relationships.
    type_into(&c, "input[name=q]", "Carol@Partner.example").await;
    click(&c, "form[role=search] button").await;
    at(&c, |p| p == "/sender?key=carol%40partner.example").await;
    h1_until(&c, |h| h.contains("carol@partner.example")).await;
    let src = c.source().await.unwrap();
    for needle in [
        "replies_received",
        "messages_sent",
        "days_known",
        "192.0.2.10",
    ] {
        assert!(src.contains(needle), "{needle} on the sender page");
    }
    assert!(c
        .find(Locator::Css("svg.contributions rect.bar"))
        .await
        .is_ok());
    let rel = c
        .find(Locator::Css("svg.relationships"))
        .await
        .unwrap()
        .html(false)
        .await
        .unwrap();
    assert!(rel.contains("alice@example.com"), "{rel}");
    shot(&c, "sender.png").await;

    // The domain and the MTA have pages of their own, reached by search.
    for (query, path, heading) in [
        (
            "partner.example",
            "/domain?key=partner.example",
            "domain partner.example",
        ),
        ("192.0.2.10", "/mta?key=192.0.2.10", "mta 192.0.2.10"),
    ] {
        type_into(&c, "input[name=q]", query).await;
        click(&c, "form[role=search] button").await;
        at(&c, |p| p == path).await;
        h1_until(&c, |h| h.starts_with(heading)).await;
        assert!(c.find(Locator::Css("svg.contributions")).await.is_ok());
    }
    let src = c.source().await.unwrap();
    assert!(src.contains("sender_domains"), "the MTA's five factors");
    shot(&c, "mta.png").await;
    c.goto(&format!("{base}/sender?key=carol%40partner.example"))
        .await
        .unwrap();

    // An override made on the page: `explain` shows it.
    c.find(Locator::Css("select[name=class]"))
        .await
        .unwrap()
        .select_by_value("malicious")
        .await
        .unwrap();
    type_into(&c, "input[name=reason]", "phished account").await;
    click(&c, "form[action='/overrides'] button").await;
    h1_until(&c, |h| h.contains("malicious")).await;
    assert_eq!(path_of(&c).await, "/sender?key=carol%40partner.example");
    let v = explain_json(&config, "carol@partner.example");
    assert_eq!(v["class"], "malicious", "{v}");
    assert_eq!(v["override"]["reason"], "phished account", "{v}");

    // Her next message shows the new class: she is a mover.
    send(
        addr,
        &Mail::inbound("carol@partner.example", "i2@partner.example"),
    )
    .await;
    c.goto(&format!("{base}/movers")).await.unwrap();
    let src = c.source().await.unwrap();
    assert!(src.contains("carol@partner.example"), "{src}");
    shot(&c, "movers.png").await;

    // The verdicts, filtered, and one explained.
    c.goto(&format!("{base}/verdicts?class=malicious"))
        .await
        .unwrap();
    let rows = c.find_all(Locator::Css("tbody tr")).await.unwrap();
    assert_eq!(
        rows.len(),
        2,
        "carol's second message and the blocked MTA's"
    );
    shot(&c, "verdicts.png").await;
    c.find(Locator::LinkText("why"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    at(&c, |p| p.starts_with("/verdict?n=")).await;
    h1_until(&c, |h| h.starts_with("Verdict")).await;
    shot(&c, "verdict.png").await;

    // What if unrated senders were quarantined: the page and the command
    // line give the same numbers over the daemon's journal.
    let overlay = "[policy.eom.sender]\nunrated = \"quarantine\"\n";
    c.goto(&format!("{base}/whatif")).await.unwrap();
    type_into(&c, "textarea[name=candidate]", overlay).await;
    click(&c, "form[action='/whatif'] button").await;
    let number = |id: &'static str| {
        let c = &c;
        async move {
            let e = c
                .wait()
                .at_most(Duration::from_secs(10))
                .for_element(Locator::Id(id))
                .await
                .unwrap();
            e.text().await.unwrap().parse::<u64>().unwrap()
        }
    };
    let (records, changed) = (
        number("whatif-records").await,
        number("whatif-changed").await,
    );
    shot(&c, "whatif.png").await;
    let candidate = dir.path().join("candidate.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&candidate, format!("{text}\n{overlay}")).unwrap();
    let out = Command::new(BIN)
        .args(["whatif", "-c"])
        .arg(&candidate)
        .arg("--current")
        .arg(&config)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["records"], records, "{cli}");
    assert_eq!(cli["changed"], changed, "{cli}");
    assert_eq!(records, 5, "the five messages so far");
    assert!(changed >= 1, "dave's unrated verdict at least: {cli}");

    // The overrides page lists it and removes it.
    c.goto(&format!("{base}/overrides")).await.unwrap();
    shot(&c, "overrides.png").await;
    click(&c, "form[action='/overrides/remove'] button").await;
    assert!(explain_json(&config, "carol@partner.example")
        .get("override")
        .is_none());

    // Logged out, the browser is back at the login page.
    click(&c, "form[action='/logout'] button").await;
    at(&c, |p| p == "/login").await;
    c.goto(&format!("{base}/verdicts")).await.unwrap();
    at(&c, |p| p == "/login").await;
    c.close().await.unwrap();
}

#[test]
fn a_console_beyond_loopback_without_a_token_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sra.toml");
    let port = free_port();
    write_config(
        &config,
        port,
        &dir.path().join("state"),
        "monitor",
        &format!("[admin]\nlisten = \"0.0.0.0:{}\"\n", free_port()),
    );
    let out = Command::new(BIN)
        .args(["run", "-c"])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("admin.token_file"), "{err}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}
