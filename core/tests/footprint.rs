//! The fixed hub's static RAM for the device configuration (4
//! connections, 8 rooms, 16 history messages of 128 B): measured with
//! `size_of` and held under the 32 KiB goal. Run with `--nocapture` for the
//! breakdown. Sizes on a 64-bit host bound those on a 32-bit device.
#![cfg(feature = "hs256")]

use switchboard_core::Hub;
use switchboard_core::auth::Hs256Authenticator;
use switchboard_core::storage::{Fixed, FixedHistory};

/// A record is postcard `(from, data)`: a 128-byte payload plus its sender
/// (a client id of ~10 bytes, a short user) is about 150 bytes.
const RECORD: usize = 150;

/// 4 connections, 8 rooms, 4 members per room, 4 rooms per connection,
/// 32 pending outputs, 2 KiB of pending frames, and 16 history messages in
/// all: 2 per room (the ring is per room).
type Device = Fixed<4, 8, 4, 4, 32, 2048, 2, { 2 * RECORD }>;

#[test]
fn device_hub_fits_32_kib() {
    let hub = core::mem::size_of::<Hub<Hs256Authenticator<'static, 32, 32>, Device>>();
    let ring = core::mem::size_of::<FixedHistory<2, { 2 * RECORD }>>();
    let (conn, sub) = Hub::<Hs256Authenticator<'static, 32, 32>, Device>::footprint();
    println!(
        "hub {hub} B; per room history ring {ring} B; per connection {conn} B; per subscription {sub} B"
    );
    assert!(hub <= 32 * 1024, "hub {hub} B");
}

/// The same with 16 messages per room (128 in all): printed for the
/// report; over the goal, which is why the device type keeps 16 in all.
#[test]
fn device_hub_with_16_messages_per_room() {
    type PerRoom = Fixed<4, 8, 4, 4, 32, 2048, 16, { 16 * RECORD }>;
    let hub = core::mem::size_of::<Hub<Hs256Authenticator<'static, 32, 32>, PerRoom>>();
    println!("hub with 16 messages per room: {hub} B");
    assert!(hub > 8 * 16 * 128, "the rings are inline: {hub} B");
}
