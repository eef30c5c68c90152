//! What the milter writes to the MTA, held back while it may wait: the
//! end of message's modification actions (headers inserted, changed or
//! removed, quarantine, recipients, ...) go out together with the reply
//! that ends the message, in one write, so the MTA wakes once to read
//! them, not once a packet. The MTA applies the actions only when that
//! reply comes, so holding them changes nothing it does.
//!
//! Every other packet goes out at the flush that follows its write, as it
//! did without the hold (indymilter flushes after each packet).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;

/// Held bytes beyond this go out at once (a body replacement, say).
const HOLD_MAX: usize = 64 * 1024;

/// The milter protocol's modification actions (`SMFIR_*`): add, insert and
/// change a header, add (also with ESMTP arguments) and delete a
/// recipient, replace the body, change the sender, quarantine.
const ACTIONS: &[u8] = b"hime+2-bq";

#[derive(Default)]
pub struct Outbox {
    buf: Vec<u8>,
    /// Bytes of `buf` already written (a drain the socket cut short): once
    /// some are out, the drain runs to the end whatever comes last.
    sent: usize,
}

impl Outbox {
    /// Takes bytes written to the stream (whole packets, or parts of one).
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Whether what waits may go on waiting: whole packets only, the last a
    /// modification action, and not too many bytes.
    fn may_wait(&self) -> bool {
        if self.buf.len() > HOLD_MAX {
            return false;
        }
        let mut at = 0;
        let mut last = None;
        while at < self.buf.len() {
            let Some(len) = self.buf.get(at..at + 4) else {
                return false;
            };
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let end = at + 4 + len;
            if len == 0 || end > self.buf.len() {
                return false;
            }
            last = Some(self.buf[at + 4]);
            at = end;
        }
        last.is_some_and(|c| ACTIONS.contains(&c))
    }

    /// Writes what waits to `w`, unless it may wait (`force`: it may not,
    /// at the end of the session). Ready once all of it is written.
    pub fn poll_drain<W: AsyncWrite + Unpin>(
        &mut self,
        mut w: Pin<&mut W>,
        cx: &mut Context<'_>,
        force: bool,
    ) -> Poll<io::Result<()>> {
        // `buf` changes only when it is written out whole, so it starts on
        // a packet: the hold is decided anew until a byte has gone.
        if self.sent == 0 && (self.buf.is_empty() || (!force && self.may_wait())) {
            return Poll::Ready(Ok(()));
        }
        while self.sent < self.buf.len() {
            match w.as_mut().poll_write(cx, &self.buf[self.sent..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.buf.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, DuplexStream};

    fn packet(cmd: u8, data: &[u8]) -> Vec<u8> {
        let mut p = ((data.len() + 1) as u32).to_be_bytes().to_vec();
        p.push(cmd);
        p.extend_from_slice(data);
        p
    }

    async fn drain(o: &mut Outbox, w: &mut DuplexStream, force: bool) {
        poll_fn(|cx| o.poll_drain(Pin::new(&mut *w), cx, force))
            .await
            .unwrap();
    }

    /// What the peer can read now (nothing: empty).
    async fn readable(r: &mut DuplexStream) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        let wait = Duration::from_millis(20);
        while let Ok(Ok(n @ 1..)) = tokio::time::timeout(wait, r.read(&mut buf)).await {
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    #[tokio::test]
    async fn actions_wait_for_the_reply_that_ends_the_message() {
        let (mut w, mut r) = tokio::io::duplex(1 << 16);
        let mut o = Outbox::default();
        let ar = packet(b'i', b"\0\0\0\0Authentication-Results\0 mx; spf=pass\0");
        let verdict = packet(b'i', b"\0\0\0\0X-SRA-Verdict\0 sender=neutral\0");
        for p in [&ar, &verdict] {
            o.push(p);
            drain(&mut o, &mut w, false).await;
            assert!(
                readable(&mut r).await.is_empty(),
                "an action went out alone"
            );
        }
        let cont = packet(b'c', b"");
        o.push(&cont);
        drain(&mut o, &mut w, false).await;
        let got = readable(&mut r).await;
        assert_eq!(got, [ar, verdict, cont].concat(), "all three, in order");
    }

    #[tokio::test]
    async fn other_replies_go_out_at_once() {
        let (mut w, mut r) = tokio::io::duplex(1 << 16);
        let mut o = Outbox::default();
        // Continue, progress, a reply code, and an action written in two
        // parts (not a whole packet yet: it goes, as before).
        for p in [
            packet(b'c', b""),
            packet(b'p', b""),
            packet(b'y', b"550 5.7.1 no\0"),
        ] {
            o.push(&p);
            drain(&mut o, &mut w, false).await;
            assert_eq!(readable(&mut r).await, p);
        }
        let action = packet(b'h', b"X-A\0b\0");
        o.push(&action[..3]);
        drain(&mut o, &mut w, false).await;
        assert_eq!(readable(&mut r).await, action[..3]);
    }

    #[tokio::test]
    async fn the_end_of_the_session_and_a_large_hold_write_it_out() {
        let (mut w, mut r) = tokio::io::duplex(1 << 20);
        let mut o = Outbox::default();
        let q = packet(b'q', b"held\0");
        o.push(&q);
        drain(&mut o, &mut w, false).await;
        assert!(readable(&mut r).await.is_empty());
        drain(&mut o, &mut w, true).await;
        assert_eq!(readable(&mut r).await, q);

        let big = packet(b'm', &vec![b'x'; HOLD_MAX]);
        o.push(&big);
        drain(&mut o, &mut w, false).await;
        assert_eq!(readable(&mut r).await.len(), big.len());
    }

    #[tokio::test]
    async fn a_short_socket_gets_everything_in_order() {
        // A pipe that takes 7 bytes at a time: the drain goes on across
        // many writes and waits.
        let (mut w, mut r) = tokio::io::duplex(7);
        let mut o = Outbox::default();
        let all = [
            packet(b'i', b"\0\0\0\0A\0 1\0"),
            packet(b'm', b"\0\0\0\x01B\0\0"),
            packet(b'c', b""),
        ];
        for p in &all {
            o.push(p);
        }
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            while got.len() < all.concat().len() {
                let n = r.read(&mut buf).await.unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            (got, all.concat())
        });
        drain(&mut o, &mut w, false).await;
        let (got, want) = reader.await.unwrap();
        assert_eq!(got, want);
    }
}
