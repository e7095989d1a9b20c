//! `Codec::Postcard.decode_client` never panics; a decoded frame
//! round-trips through both encoders (see
//! `switchboard_fuzz::frames::check_client`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_core::Codec;

fuzz_target!(|data: &[u8]| {
    switchboard_fuzz::frames::check_client(Codec::Postcard, data);
});
