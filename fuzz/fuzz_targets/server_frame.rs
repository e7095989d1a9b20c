//! `Codec::{Json,Postcard}.decode_server` (what clients run) never panics;
//! a decoded frame round-trips through the server encoders of both codecs
//! (see `switchboard_fuzz::frames::check_server`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_core::Codec;

fuzz_target!(|data: &[u8]| {
    switchboard_fuzz::frames::check_server(Codec::Json, data);
    switchboard_fuzz::frames::check_server(Codec::Postcard, data);
});
