//! A milter that does nothing: every callback continues. The yardstick of
//! scripts/postfix-bench.sh, on the same listener as sra-milter (TCP with
//! `TCP_NODELAY`, or a unix socket), so the comparison measures what
//! sra-milter does with a message, not the transport.
//!
//!     cargo run --release --example noop_milter -- inet:127.0.0.1:PORT | unix:PATH [headers]
//!
//! With `headers` it also inserts, at end of message, two headers of the
//! size sra-milter adds to a signed message (Authentication-Results and
//! X-SRA-Verdict): what adding them costs the MTA, apart from the milter's
//! own work.

use indymilter::ContextActions;
use sra_milter::config::SocketSpec;
use sra_milter::milter::{MilterListener, SILENT_STAGES};

/// sra-milter's allocator (src/main.rs), so the bar is like for like.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sra-milter's runtime too: `worker_threads`' default of worker threads.
fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(sra_milter::config::Config::default().worker_threads)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(serve());
}

async fn serve() {
    let spec: SocketSpec = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "inet:127.0.0.1:8895".into())
        .parse()
        .expect("a socket: inet:HOST:PORT or unix:PATH");
    let headers = std::env::args().nth(2).as_deref() == Some("headers");
    let listener = MilterListener::bind(&spec, 0o666).await.expect("bind");
    let config = indymilter::Config {
        max_connections: 200,
        ..Default::default()
    };
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    // Every stage sra-milter takes part in, each answering Continue: the
    // same conversation with the MTA (without the DATA callback, Postfix's
    // DATA macros wait for a delayed ACK), none of the work. Like
    // sra-milter, it asks the MTA not to wait for an answer at the stages
    // that always go on (`SILENT_STAGES`), so the protocol is the same too.
    use indymilter::{ProtoOpts, Status};
    // Per connection: the stages the MTA agreed not to wait for.
    let silent = |cx: &Option<ProtoOpts>, stage: ProtoOpts| {
        if cx.is_some_and(|o| o.contains(stage)) {
            Status::Noreply
        } else {
            Status::Continue
        }
    };
    let callbacks = indymilter::Callbacks::<ProtoOpts>::new()
        .on_negotiate(move |cx, _, opts| {
            Box::pin(async move {
                let s = opts & SILENT_STAGES;
                cx.requested_opts |= s;
                if headers {
                    cx.requested_actions = indymilter::Actions::ADD_HEADER;
                }
                cx.data = Some(s);
                Status::Continue
            })
        })
        .on_connect(|_, _, _| Box::pin(async { Status::Continue }))
        .on_helo(move |cx, _| Box::pin(async move { silent(&cx.data, ProtoOpts::NOREPLY_HELO) }))
        .on_mail(|_, _| Box::pin(async { Status::Continue }))
        .on_rcpt(|_, _| Box::pin(async { Status::Continue }))
        .on_data(move |cx| Box::pin(async move { silent(&cx.data, ProtoOpts::NOREPLY_DATA) }))
        .on_header(move |cx, _, _| {
            Box::pin(async move { silent(&cx.data, ProtoOpts::NOREPLY_HEADER) })
        })
        .on_eoh(move |cx| Box::pin(async move { silent(&cx.data, ProtoOpts::NOREPLY_EOH) }))
        .on_body(move |cx, _| Box::pin(async move { silent(&cx.data, ProtoOpts::NOREPLY_BODY) }))
        .on_eom(move |cx| {
            Box::pin(async move {
                if headers {
                    for (name, value) in ADDED {
                        let _ = cx.actions.insert_header(0, *name, *value).await;
                    }
                }
                Status::Continue
            })
        });
    // On a runtime worker, as `daemon::serve` runs it.
    tokio::spawn(indymilter::run(listener, callbacks, config, stop))
        .await
        .expect("milter task")
        .expect("milter");
}

/// What sra-milter adds to the benchmark's signed message (the values'
/// lengths are what matter).
const ADDED: &[(&str, &str)] = &[
    (
        "Authentication-Results",
        "mx.example.com;\n\tdkim=pass header.d=partner.example header.s=s1 header.b=dJIZfh7I;\n\tspf=none (mx.example.com: no SPF records found for postmaster@vm) smtp.helo=vm;\n\tspf=pass (mx.example.com: domain of partner.example designates 127.0.0.1 as permitted sender) smtp.mailfrom=partner.example;\n\tarc=none smtp.remote-ip=127.0.0.1;\n\tdmarc=pass header.from=partner.example policy.dmarc=reject",
    ),
    (
        "X-SRA-Verdict",
        "sender=neutral (50.0); mta=neutral (50.0); action=accept; monitor=yes",
    ),
];
