//! The milter: callbacks, the per-connection session, the listening socket.
//!
//! Callbacks are thin functions that fetch the per-connection session and
//! call one method on it ([`session`], [`eom`]). A missing session is
//! answered per `on_error`; nothing here panics on what the MTA sends. The
//! session sees the daemon only through [`Services`]: the engine, the
//! authenticator, the live configuration and the metrics.

mod eom;
mod listener;
mod outbox;
mod session;

pub use listener::{MilterListener, Stream, STRESS_IDLE};
pub use session::Connection;

use crate::shared::Shared;
use crate::store::StoreError;
use crate::vocab::OnError;
use indymilter::{SetErrorReply, SmtpReply};

use indymilter::{
    Actions, Callbacks, Context, EomContext, MacroStage, NegotiateContext, ProtoOpts, SocketInfo,
    Status,
};
use std::ffi::CString;
use std::sync::Arc;

/// Macros asked for at each stage (Postfix `milter_*_macros` supply them).
fn requested_macros() -> Vec<(MacroStage, &'static str)> {
    vec![
        (MacroStage::Connect, "j {client_addr} {daemon_name}"),
        (MacroStage::Mail, "i {auth_authen} {auth_type}"),
        (MacroStage::Rcpt, "i"),
        (MacroStage::Data, "i"),
        (MacroStage::Eoh, "i"),
        (MacroStage::Eom, "i"),
    ]
}

/// The stages whose answer is always "go on" (HELO, DATA, each header, end
/// of headers, each body chunk): sra-milter asks the MTA not to wait for
/// it (milter protocol 6, Postfix 2.6 and later), which saves a round trip
/// per header and body chunk. Connect, MAIL, RCPT and end of message, where
/// a verdict can be given, are answered as before.
pub const SILENT_STAGES: ProtoOpts = ProtoOpts::NOREPLY_HELO
    .union(ProtoOpts::NOREPLY_DATA)
    .union(ProtoOpts::NOREPLY_HEADER)
    .union(ProtoOpts::NOREPLY_EOH)
    .union(ProtoOpts::NOREPLY_BODY);

pub const NEEDED_ACTIONS: Actions = Actions::ADD_HEADER
    .union(Actions::CHANGE_HEADER)
    .union(Actions::QUARANTINE);

async fn negotiate(
    shared: Arc<Shared>,
    cx: &mut NegotiateContext<Connection>,
    actions: Actions,
    opts: ProtoOpts,
) -> Status {
    if !actions.contains(NEEDED_ACTIONS) {
        tracing::error!(
            "mta does not offer the actions sra-milter needs (add header, change header, quarantine); refusing the milter connection"
        );
        return Status::Reject;
    }
    cx.requested_actions = NEEDED_ACTIONS;
    // Header values exactly as received (with the space after the colon),
    // so that DKIM's simple canonicalisation verifies; and no answer to the
    // stages that always go on; each where the MTA allows it.
    let agreed = opts & (SILENT_STAGES | ProtoOpts::LEADING_SPACE);
    cx.requested_opts |= agreed;
    for (stage, macros) in requested_macros() {
        if let Ok(m) = CString::new(macros) {
            cx.requested_macros.insert(stage, m);
        }
    }
    cx.data = Some(Connection::new(shared, agreed));
    Status::Continue
}

fn with_session<'a>(
    shared: &Shared,
    data: &'a mut Option<Connection>,
    stage: &str,
) -> Result<&'a mut Connection, Status> {
    match data.as_mut() {
        Some(c) => Ok(c),
        None => {
            tracing::error!("no session at {stage}; answering per on_error");
            Err(error_status(shared))
        }
    }
}

/// Runs one stage's work and records its latency.
async fn timed(
    shared: &Shared,
    stage: &str,
    work: impl std::future::Future<Output = Status>,
) -> Status {
    let started = std::time::Instant::now();
    let status = work.await;
    shared.metrics.stage_latency(stage, started.elapsed());
    status
}

pub fn callbacks(shared: Arc<Shared>) -> Callbacks<Connection> {
    let s_negotiate = shared.clone();
    let s_connect = shared.clone();
    let s_helo = shared.clone();
    let s_mail = shared.clone();
    let s_rcpt = shared.clone();
    let s_data = shared.clone();
    let s_header = shared.clone();
    let s_eoh = shared.clone();
    let s_body = shared.clone();
    let s_eom = shared.clone();
    Callbacks::new()
        .on_negotiate(move |cx, actions, opts| {
            Box::pin(negotiate(s_negotiate.clone(), cx, actions, opts))
        })
        .on_connect(move |cx, hostname, info| {
            let shared = s_connect.clone();
            Box::pin(async move {
                let ip = match info {
                    SocketInfo::Inet(addr) => Some(addr.ip()),
                    _ => None,
                };
                let started = std::time::Instant::now();
                // The session began at negotiation (a new one if the MTA
                // skipped it).
                let conn = cx
                    .data
                    .take()
                    .unwrap_or_else(|| Connection::new(shared.clone(), ProtoOpts::empty()));
                let (conn, status) = conn
                    .connect(hostname.to_string_lossy().into_owned(), ip, cx)
                    .await;
                cx.data = Some(conn);
                shared.metrics.stage_latency("connect", started.elapsed());
                status
            })
        })
        .on_helo(move |cx, helo| {
            let shared = s_helo.clone();
            Box::pin(async move {
                match with_session(&shared, &mut cx.data, "helo") {
                    Ok(c) => {
                        c.helo = helo.to_string_lossy().chars().take(255).collect();
                        c.goes_on(ProtoOpts::NOREPLY_HELO)
                    }
                    Err(s) => s,
                }
            })
        })
        .on_mail(move |cx, args| {
            let shared = s_mail.clone();
            Box::pin(async move {
                let Context {
                    data,
                    macros,
                    reply,
                } = cx;
                timed(&shared, "mail", async {
                    match with_session(&shared, data, "mail") {
                        Ok(c) => c.mail(&args, macros, reply).await,
                        Err(s) => s,
                    }
                })
                .await
            })
        })
        .on_rcpt(move |cx, args| {
            let shared = s_rcpt.clone();
            Box::pin(async move {
                let Context {
                    data,
                    macros,
                    reply,
                } = cx;
                timed(&shared, "rcpt", async {
                    match with_session(&shared, data, "rcpt") {
                        Ok(c) => c.rcpt(&args, macros, reply),
                        Err(s) => s,
                    }
                })
                .await
            })
        })
        // Registered so that Postfix sends its DATA-stage macros together
        // with a command, instead of as a lone packet that waits for a
        // delayed ACK.
        .on_data(move |cx| {
            let shared = s_data.clone();
            Box::pin(async move {
                match with_session(&shared, &mut cx.data, "data") {
                    Ok(c) => c.goes_on(ProtoOpts::NOREPLY_DATA),
                    Err(s) => s,
                }
            })
        })
        .on_header(move |cx, name, value| {
            let shared = s_header.clone();
            Box::pin(async move {
                match with_session(&shared, &mut cx.data, "header") {
                    Ok(c) => {
                        c.header(name.as_bytes(), value.as_bytes());
                        c.goes_on(ProtoOpts::NOREPLY_HEADER)
                    }
                    Err(s) => s,
                }
            })
        })
        .on_eoh(move |cx| {
            let shared = s_eoh.clone();
            Box::pin(async move {
                match with_session(&shared, &mut cx.data, "eoh") {
                    Ok(c) => {
                        c.end_of_headers();
                        c.goes_on(ProtoOpts::NOREPLY_EOH)
                    }
                    Err(s) => s,
                }
            })
        })
        .on_body(move |cx, chunk| {
            let shared = s_body.clone();
            Box::pin(async move {
                match with_session(&shared, &mut cx.data, "body") {
                    Ok(c) => {
                        c.body(&chunk);
                        c.goes_on(ProtoOpts::NOREPLY_BODY)
                    }
                    Err(s) => s,
                }
            })
        })
        .on_eom(move |cx| {
            let shared = s_eom.clone();
            Box::pin(async move {
                let EomContext {
                    data,
                    macros,
                    reply,
                    actions,
                } = cx;
                timed(&shared, "eom", async {
                    match with_session(&shared, data, "eom") {
                        Ok(c) => c.eom(macros, reply, actions).await,
                        Err(s) => s,
                    }
                })
                .await
            })
        })
        .on_abort(|cx| {
            Box::pin(async move {
                if let Some(c) = cx.data.as_mut() {
                    c.abort();
                }
                Status::Continue
            })
        })
}

/// The status for an error, per `on_error` (without a reply).
fn error_status(shared: &Shared) -> Status {
    match shared.config().on_error {
        OnError::Accept => Status::Continue,
        OnError::Tempfail => Status::Tempfail,
        OnError::Reject => Status::Reject,
    }
}

/// Logs an error with its queue id and answers per `on_error`.
fn on_error(shared: &Shared, qid: &str, error: &StoreError, reply: &mut SmtpReply) -> Status {
    shared.metrics.error(error.kind());
    let policy = shared.config().on_error;
    tracing::error!("{qid}: {error}; answering per on_error={policy}");
    let (code, xcode, text) = match policy {
        OnError::Accept => return Status::Continue,
        OnError::Tempfail => ("451", "4.3.0", "temporary local problem, try again later"),
        OnError::Reject => ("550", "5.3.0", "local problem, message not accepted"),
    };
    if let Err(e) = reply.set_error_reply(code, Some(xcode), [text]) {
        tracing::error!("cannot set smtp reply: {e}");
    }
    error_status(shared)
}
