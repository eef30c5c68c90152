//! In-process milter for integration tests: a real RocksDB in a temp dir,
//! the real `daemon::serve` on a loopback port, driven by indymilter-test
//! exactly as Postfix drives a milter.
#![allow(dead_code)]

use indymilter_test::{EomActions, MacroStage, Status, TestConnection};
use sra_milter::config::Config;
use sra_milter::config::SocketSpec;
use sra_milter::daemon::{self, Shared};
use sra_milter::milter::MilterListener;
use sra_milter::pipeline::Engine;
use sra_milter::store::ReputationStore;
use sra_milter::vocab::Mode;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct Milter {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    pub store: Arc<dyn ReputationStore>,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// The base test configuration: enterprise `example.com`, internal
/// `10.0.0.0/8`, enforcing.
pub fn config(dir: &std::path::Path) -> Config {
    let mut cfg = Config {
        socket: SocketSpec::Inet("127.0.0.1:0".into()),
        state_dir: dir.join("store"),
        mode: Mode::Enforce,
        enterprise_domains: vec!["example.com".into()],
        internal_networks: vec!["10.0.0.0/8".parse().unwrap()],
        ..Config::default()
    };
    cfg.admin.control_socket = Some(dir.join("control.sock"));
    // There is no DNS here: tests of authentication pre-load the caches
    // (tests/auth.rs); these tests rate identities as given.
    cfg.auth.verify = false;
    cfg.validate().unwrap();
    cfg
}

pub async fn start_with(dir: tempfile::TempDir, cfg: Config) -> Milter {
    let auth = Arc::new(sra_milter::auth::Authenticator::new(&cfg.dns).unwrap());
    start_with_auth(dir, cfg, auth).await
}

/// With a given authenticator (its caches pre-loaded with the test's DNS).
pub async fn start_with_auth(
    dir: tempfile::TempDir,
    cfg: Config,
    auth: Arc<sra_milter::auth::Authenticator>,
) -> Milter {
    // The store `[store]` names: RocksDB in the temp dir, or Redis.
    let store = sra_milter::store::open(&cfg).unwrap();
    let engine = Arc::new(Engine::new(store.clone(), &cfg).unwrap());
    let listener = MilterListener::bind(&cfg.socket, 0o660).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shared = Shared::with_authenticator(cfg, engine, auth);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(daemon::serve(listener, shared.clone(), async move {
        let _ = rx.await;
    }));
    // serve() binds the control socket as it starts; wait for it.
    let control = shared.config().control_socket();
    for _ in 0..200 {
        if control.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Milter {
        addr,
        shared,
        store,
        dir,
        stop: Some(tx),
        task: Some(task),
    }
}

pub async fn start(tune: impl FnOnce(&mut Config)) -> Milter {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    tune(&mut cfg);
    cfg.validate().unwrap();
    start_with(dir, cfg).await
}

impl Milter {
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        self.dir
    }
}

/// One SMTP transaction as Postfix presents it to a milter.
#[derive(Clone)]
pub struct Mail {
    pub ip: IpAddr,
    pub helo: String,
    pub auth: Option<String>,
    pub queue_id: String,
    pub from: String,
    pub rcpts: Vec<String>,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Mail {
    /// Inbound mail from `from` at 192.0.2.10 to alice@example.com.
    pub fn inbound(from: &str, message_id: &str) -> Mail {
        Mail {
            ip: "192.0.2.10".parse().unwrap(),
            helo: "mx.partner.example".into(),
            auth: None,
            queue_id: "4XyZ1A2B3C".into(),
            from: from.into(),
            rcpts: vec!["alice@example.com".into()],
            headers: vec![
                // A display name that belongs to the address.
                (
                    "From".into(),
                    format!("{} <{from}>", from.split('@').next().unwrap_or("someone")),
                ),
                ("To".into(), "alice@example.com".into()),
                ("Subject".into(), "hello".into()),
                ("Message-ID".into(), format!("<{message_id}>")),
            ],
            body: "Hello Alice.\r\n".into(),
        }
    }

    /// Outbound mail from alice@example.com (authenticated) to `to`.
    pub fn outbound(to: &str, message_id: &str) -> Mail {
        Mail {
            ip: "198.51.100.77".parse().unwrap(),
            helo: "laptop".into(),
            auth: Some("alice".into()),
            queue_id: "5OUT1A2B3C".into(),
            from: "alice@example.com".into(),
            rcpts: vec![to.into()],
            headers: vec![
                ("From".into(), "Alice <alice@example.com>".into()),
                ("To".into(), to.into()),
                ("Subject".into(), "question".into()),
                ("Message-ID".into(), format!("<{message_id}>")),
            ],
            body: "Hi.\r\n".into(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Mail {
        self.headers.push((name.into(), value.into()));
        self
    }
}

#[derive(Debug)]
pub struct Transcript {
    pub connect: Status,
    pub mail: Option<Status>,
    pub rcpts: Vec<Status>,
    pub eom: Option<(EomActions, Status)>,
    /// The milter gives header values with their space after the colon
    /// (`LEADING_SPACE` negotiated), as the MTA writes them.
    pub leading_space: bool,
}

impl Transcript {
    /// The headers the milter added or inserted at end of message, name and
    /// value exactly as it gave them.
    pub fn added(&self) -> Vec<(String, String)> {
        use indymilter_test::EomAction;
        let Some((actions, _)) = &self.eom else {
            return Vec::new();
        };
        actions
            .actions
            .iter()
            .filter_map(|a| match a {
                EomAction::InsertHeader { name, value, .. }
                | EomAction::AddHeader { name, value } => Some((
                    name.to_string_lossy().into_owned(),
                    value.to_string_lossy().into_owned(),
                )),
                _ => None,
            })
            .collect()
    }

    /// An added header's value as the message shows it after "Name: " (the
    /// one space the milter brings, where it must, taken off).
    pub fn header(&self, name: &str) -> Option<String> {
        let (_, v) = self.added().into_iter().find(|(n, _)| n == name)?;
        match (self.leading_space, v.strip_prefix(' ')) {
            (true, Some(rest)) => Some(rest.to_string()),
            _ => Some(v),
        }
    }

    pub fn eom_status(&self) -> Option<&Status> {
        self.eom.as_ref().map(|(_, s)| s)
    }

    pub fn quarantined(&self) -> bool {
        self.eom
            .as_ref()
            .is_some_and(|(a, _)| a.has_quarantine(indymilter_test::any()))
    }
}

fn stops(s: &Status) -> bool {
    matches!(
        s,
        Status::Reject { .. } | Status::Tempfail { .. } | Status::Discard | Status::Accept
    )
}

/// Sends one transaction; stops where the milter refuses.
pub async fn send(addr: SocketAddr, m: &Mail) -> Transcript {
    try_send(addr, m).await.unwrap()
}

/// [`send`], with the connection's errors returned (a milter killed
/// mid-session).
pub async fn try_send(
    addr: SocketAddr,
    m: &Mail,
) -> Result<Transcript, Box<dyn std::error::Error + Send + Sync>> {
    send_on(TestConnection::open(addr).await?, m).await
}

/// [`try_send`] on a connection opened (and negotiated) by the caller, e.g.
/// with other protocol options offered; header values go as they are in
/// `m` (with `exact_leading_space`, as an MTA passes them).
pub async fn send_on(
    mut conn: TestConnection,
    m: &Mail,
) -> Result<Transcript, Box<dyn std::error::Error + Send + Sync>> {
    conn.macros(MacroStage::Connect, [("j", "mx.example.com")])
        .await?;
    let connect = conn.connect(m.helo.as_str(), m.ip).await?;
    let mut t = Transcript {
        connect,
        mail: None,
        rcpts: vec![],
        eom: None,
        leading_space: conn
            .negotiated_opts()
            .contains(indymilter_test::ProtoOpts::LEADING_SPACE),
    };
    if stops(&t.connect) {
        conn.close().await?;
        return Ok(t);
    }
    conn.helo(m.helo.as_str()).await?;
    let mut mail_macros = vec![("i", m.queue_id.clone())];
    if let Some(a) = &m.auth {
        mail_macros.push(("{auth_authen}", a.clone()));
    }
    conn.macros(MacroStage::Mail, mail_macros).await?;
    let status = conn.mail([format!("<{}>", m.from)]).await?;
    t.mail = Some(status.clone());
    if stops(&status) {
        conn.close().await?;
        return Ok(t);
    }
    let mut accepted = 0;
    for (i, r) in m.rcpts.iter().enumerate() {
        // Postfix repeats the macros before each RCPT; once is enough here,
        // and each separate small write waits for a delayed ACK (this
        // client sets no TCP_NODELAY).
        if i == 0 {
            conn.macros(MacroStage::Rcpt, [("i", m.queue_id.as_str())])
                .await?;
        }
        let s = conn.rcpt([format!("<{r}>")]).await?;
        if !stops(&s) {
            accepted += 1;
        }
        t.rcpts.push(s);
    }
    if accepted == 0 {
        conn.close().await?;
        return Ok(t);
    }
    conn.data().await?;
    for (n, v) in &m.headers {
        conn.header(n.as_str(), v.as_str()).await?;
    }
    conn.eoh().await?;
    conn.body(m.body.clone()).await?;
    conn.macros(MacroStage::Eom, [("i", m.queue_id.as_str())])
        .await?;
    t.eom = Some(conn.eom().await?);
    conn.close().await?;
    Ok(t)
}
