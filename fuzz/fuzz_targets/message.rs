//! The message builder: any bytes as a received message's text, read once
//! into `Content` and built into the `Message` that is rated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sra_milter::message::{Content, Envelope, Message};

fuzz_target!(|data: &[u8]| {
    let content = Content::parse(data);
    let msg = Message::new(Envelope::default(), &content);
    let _ = msg.sender_key();
});
