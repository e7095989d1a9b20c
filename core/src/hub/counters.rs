//! Counters by protocol code, for monitoring (`/metrics`): how many
//! connections ended with each close code, and how many `error` frames were
//! sent with each error code (PROTOCOL.md §6).
//!
//! The hub decides every close and every error, so it counts them, in fixed
//! arrays indexed by code (no allocation, no lock): a runtime reads them at
//! scrape time through [`super::Stats`].

/// The close codes counted one by one, with their label; every other code
/// is counted under [`OTHER_LABEL`]. 1006 (no close frame: the heartbeat dropped
/// the connection, or its socket vanished) is not sent on the wire, but is
/// how RFC 6455 names such an end.
const CLOSE_CODES: [(u16, &str); 17] = [
    (1000, "1000"),
    (1001, "1001"),
    (1002, "1002"),
    (1003, "1003"),
    (1006, "1006"),
    (1007, "1007"),
    (1009, "1009"),
    (1011, "1011"),
    (1012, "1012"),
    (1013, "1013"),
    (4001, "4001"),
    (4002, "4002"),
    (4003, "4003"),
    (4004, "4004"),
    (4008, "4008"),
    (4009, "4009"),
    (4010, "4010"),
];

/// The `error` codes counted one by one; others under [`OTHER_LABEL`].
const ERROR_CODES: [(u16, &str); 7] = [
    (4000, "4000"),
    (4003, "4003"),
    (4004, "4004"),
    (4005, "4005"),
    (4006, "4006"),
    (4008, "4008"),
    (4013, "4013"),
];

/// The label of the slot that counts the codes not listed.
pub const OTHER_LABEL: &str = "other";

/// The close code under which a connection that ended without a close
/// frame is counted (RFC 6455's "abnormal closure").
pub const NO_CLOSE_FRAME: u16 = 1006;

macro_rules! code_counts {
    ($(#[$doc:meta])* $name:ident, $table:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name([u64; $table.len() + 1]);

        impl Default for $name {
            fn default() -> Self {
                $name([0; $table.len() + 1])
            }
        }

        impl $name {
            /// The count for `code` (codes that are not listed one by one
            /// share the `other` count).
            pub fn get(&self, code: u16) -> u64 {
                self.0[Self::slot(code)]
            }

            /// Every slot with its label (the code as decimal text, or
            /// [`OTHER_LABEL`]) and its count, zeros included, in a fixed order.
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
                $table
                    .iter()
                    .map(|(_, label)| *label)
                    .chain(core::iter::once(OTHER_LABEL))
                    .zip(self.0.iter().copied())
            }

            /// The sum over every code.
            pub fn total(&self) -> u64 {
                self.0.iter().sum()
            }

            pub(super) fn add(&mut self, code: u16) {
                let slot = Self::slot(code);
                self.0[slot] = self.0[slot].wrapping_add(1);
            }

            fn slot(code: u16) -> usize {
                $table
                    .iter()
                    .position(|(c, _)| *c == code)
                    .unwrap_or($table.len())
            }
        }
    };
}

code_counts!(
    /// Connections ended, by close code: the code the server closed with,
    /// the peer's own code when the peer started the closing handshake, or
    /// 1006 for a connection that ended without a close frame.
    CloseCounts,
    CLOSE_CODES
);

code_counts!(
    /// `error` frames sent, by error code.
    ErrorCounts,
    ERROR_CODES
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_code_and_other() {
        let mut c = CloseCounts::default();
        c.add(4001);
        c.add(4001);
        c.add(1006);
        c.add(3000);
        c.add(4999);
        assert_eq!(c.get(4001), 2);
        assert_eq!(c.get(1006), 1);
        assert_eq!(c.get(1000), 0);
        // Unlisted codes share one slot.
        assert_eq!(c.get(3000), 2);
        assert_eq!(c.total(), 5);
        let labels: heapless::Vec<(&str, u64), 32> = c.iter().collect();
        assert_eq!(labels.len(), CLOSE_CODES.len() + 1);
        assert!(labels.contains(&("4001", 2)));
        assert!(labels.contains(&(OTHER_LABEL, 2)));

        let mut e = ErrorCounts::default();
        e.add(4005);
        assert_eq!(e.get(4005), 1);
        assert_eq!(e.iter().filter(|(_, n)| *n > 0).count(), 1);
    }

    #[test]
    fn labels_spell_their_codes() {
        use core::fmt::Write;
        for (code, label) in CLOSE_CODES.iter().chain(ERROR_CODES.iter()) {
            let mut s = heapless::String::<8>::new();
            write!(s, "{code}").unwrap();
            assert_eq!(s.as_str(), *label);
        }
    }
}
