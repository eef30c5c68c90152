//! A milter that does nothing: every callback continues. The yardstick of
//! scripts/postfix-bench.sh, on the same listener as sra-milter (TCP with
//! `TCP_NODELAY`, or a unix socket), so the comparison measures what
//! sra-milter does with a message, not the transport.
//!
//!     cargo run --release --example noop_milter -- inet:127.0.0.1:PORT | unix:PATH

use sra_milter::config::SocketSpec;
use sra_milter::milter::MilterListener;

/// sra-milter's allocator (src/main.rs), so the bar is like for like.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let spec: SocketSpec = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "inet:127.0.0.1:8895".into())
        .parse()
        .expect("a socket: inet:HOST:PORT or unix:PATH");
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
    // DATA macros wait for a delayed ACK), none of the work.
    use indymilter::Status;
    let callbacks = indymilter::Callbacks::<()>::new()
        .on_connect(|_, _, _| Box::pin(async { Status::Continue }))
        .on_helo(|_, _| Box::pin(async { Status::Continue }))
        .on_mail(|_, _| Box::pin(async { Status::Continue }))
        .on_rcpt(|_, _| Box::pin(async { Status::Continue }))
        .on_data(|_| Box::pin(async { Status::Continue }))
        .on_header(|_, _, _| Box::pin(async { Status::Continue }))
        .on_eoh(|_| Box::pin(async { Status::Continue }))
        .on_body(|_, _| Box::pin(async { Status::Continue }))
        .on_eom(|_| Box::pin(async { Status::Continue }));
    indymilter::run(listener, callbacks, config, stop)
        .await
        .expect("milter");
}
