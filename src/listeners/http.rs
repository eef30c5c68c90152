//! A small HTTP/1.1 server for the loopback listeners (engagement events,
//! metrics): one request per connection, `Content-Length` bodies only,
//! bounded header and body sizes, a read deadline, a cap on open
//! connections, and a gate (the bearer token) checked on the request head
//! before any body is read. Enough for a mailbox server's push script and a
//! Prometheus scraper, and nothing a stranger can use to hold resources:
//! at most `max_connections × (16 KiB + max_body)` of buffers, and a
//! listener out of file descriptors pauses instead of failing.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

const MAX_HEAD: usize = 16 * 1024;
/// Connections one listener keeps open at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 64;
const READ_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Looks at a request's head before its body is read: `Some(response)`
/// refuses it (a missing token) without reading the body.
pub type Gate = Arc<dyn Fn(&Request) -> Option<Response> + Send + Sync>;

/// What a handler returns.
pub type ResponseFuture = std::pin::Pin<Box<dyn Future<Output = Response> + Send>>;

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, v: serde_json::Value) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: (v.to_string() + "\n").into_bytes(),
        }
    }

    pub fn text(status: u16, content_type: &'static str, body: String) -> Response {
        Response {
            status,
            content_type,
            body: body.into_bytes(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

async fn write_response(stream: &mut TcpStream, r: &Response) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    if r.status == 401 {
        head.push_str("WWW-Authenticate: Bearer\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&r.body).await?;
    stream.shutdown().await
}

/// Reads one request; `Err(response)` for a request that cannot be served.
async fn read_request(
    stream: &mut TcpStream,
    max_body: usize,
    gate: Option<&Gate>,
) -> Result<Request, Response> {
    let err = |status: u16, msg: &str| Response::json(status, serde_json::json!({ "error": msg }));
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if buf.len() > MAX_HEAD {
            return Err(err(413, "request head too large"));
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(err(400, "incomplete request")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let (Some(method), Some(path)) = (first.next(), first.next()) else {
        return Err(err(400, "malformed request line"));
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut req = Request {
        method: method.to_string(),
        path: path.to_string(),
        headers,
        body: Vec::new(),
    };
    if let Some(refused) = gate.and_then(|g| g(&req)) {
        return Err(refused);
    }
    if req
        .header("transfer-encoding")
        .is_some_and(|t| !t.eq_ignore_ascii_case("identity"))
    {
        return Err(err(411, "send a Content-Length body"));
    }
    let len: usize = match req.header("content-length") {
        Some(v) => v.parse().map_err(|_| err(400, "bad Content-Length"))?,
        None if req.method == "POST" => return Err(err(411, "Content-Length required")),
        None => 0,
    };
    if len > max_body {
        return Err(err(413, &format!("body larger than {max_body} bytes")));
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(err(400, "incomplete body")),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(len);
    req.body = body;
    Ok(req)
}

/// Serves `handler` on `listener` until `shutdown` completes; `gate`
/// checks each request head before its body is read.
pub async fn serve<H, F>(
    listener: TcpListener,
    max_body: usize,
    gate: Option<Gate>,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Response> + Send,
{
    let name = listener
        .local_addr()
        .map_or_else(|_| "http".to_string(), |a| a.to_string());
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut starved = false;
    let mut full = false;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => return,
        };
        let (mut stream, _peer): (TcpStream, SocketAddr) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors or a client that left: pause, log
                // once, and go on; never end the listener (or the daemon).
                if !starved {
                    tracing::warn!("http listener {name}: cannot accept: {e}; retrying");
                    starved = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        starved = false;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if !full {
                tracing::warn!(
                    "http listener {name}: {MAX_CONNECTIONS} connections open; closing new ones until some finish"
                );
                full = true;
            }
            drop(stream);
            continue;
        };
        full = false;
        let handler = handler.clone();
        let gate = gate.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let resp = match tokio::time::timeout(
                READ_DEADLINE,
                read_request(&mut stream, max_body, gate.as_ref()),
            )
            .await
            {
                Ok(Ok(req)) => handler(req).await,
                Ok(Err(resp)) => resp,
                Err(_) => Response::json(408, serde_json::json!({ "error": "request timed out" })),
            };
            let _ = write_response(&mut stream, &resp).await;
        });
    }
}

/// Compares secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
