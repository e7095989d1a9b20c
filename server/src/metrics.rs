//! `GET /metrics` (PROTOCOL.md §11): the hub's gauges and counters in the
//! text format that Prometheus scrapes (OpenMetrics 1.0, encoded by
//! `prometheus-client`).
//!
//! Nothing is counted here. Every scrape reads what the hub already keeps:
//! the core's [`Stats`](switchboard_core::hub::Stats) (connections, rooms,
//! publishes, closes and errors by code, all decided and counted by the
//! core), the engine's count of delivered messages (one relaxed atomic add
//! per delivery plan, not per recipient), and the remote store's
//! [`StoreStats`](crate::StoreStats) and [`RoundTrips`]. The registry is
//! built for the scrape from one server's engine, so several servers in one
//! process never see each other's numbers (there is no global recorder).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::engine::Engine;

/// The content type of the answer (OpenMetrics text, which Prometheus
/// negotiates and reads as it reads its own text format).
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A histogram of a remote store's round trips, in seconds
/// (`switchboard_redis_roundtrip_seconds`). The store observes every
/// operation and health ping into it; `/metrics` reads it at scrape time.
/// Cheap to clone (the clones share the counts).
#[derive(Debug, Clone)]
pub struct RoundTrips(Histogram);

impl RoundTrips {
    /// An empty histogram with buckets from 100 µs to about 3.3 s
    /// (doubling: 0.0001, 0.0002, 0.0004, …).
    pub fn new() -> Self {
        RoundTrips(Histogram::new(exponential_buckets(0.0001, 2.0, 16)))
    }

    /// Counts one round trip that took `took`.
    pub fn observe(&self, took: Duration) {
        self.0.observe(took.as_secs_f64());
    }
}

impl Default for RoundTrips {
    fn default() -> Self {
        RoundTrips::new()
    }
}

/// The metrics of one server, read from its engine on every scrape.
struct HubCollector {
    engine: Arc<dyn Engine>,
}

impl std::fmt::Debug for HubCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HubCollector")
    }
}

fn gauge<N>(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: N) -> std::fmt::Result
where
    ConstGauge<N>: EncodeMetric,
{
    let g = ConstGauge::new(v);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

/// `name` without its `_total`: the encoder adds it to the sample.
fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: u64,
) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

fn by_code(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    counts: impl Iterator<Item = (&'static str, u64)>,
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (code, n) in counts {
        ConstCounter::new(n).encode(family.encode_family(&[("code", code)])?)?;
    }
    Ok(())
}

impl Collector for HubCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> std::fmt::Result {
        let s = self.engine.stats();
        gauge(
            &mut e,
            "switchboard_connections",
            "WebSocket connections in the hub's table.",
            s.connections as u64,
        )?;
        gauge(
            &mut e,
            "switchboard_rooms",
            "Rooms with state (subscribers or kept history).",
            s.rooms as u64,
        )?;
        gauge(
            &mut e,
            "switchboard_pending_auth",
            "Connections still waiting for their auth frame.",
            s.pending_auth as u64,
        )?;
        gauge(
            &mut e,
            "switchboard_history_bytes",
            "Bytes of kept history over every room.",
            s.history_bytes as u64,
        )?;
        gauge(
            &mut e,
            "switchboard_history_messages",
            "Messages kept in history over every room.",
            s.history_messages as u64,
        )?;
        gauge(
            &mut e,
            "switchboard_inbound_bytes",
            "Bytes held by unfinished inbound messages.",
            self.engine.inbound_bytes() as u64,
        )?;
        counter(
            &mut e,
            "switchboard_messages_published",
            "Messages published (clients and server side, the HTTP API included).",
            s.published,
        )?;
        counter(
            &mut e,
            "switchboard_messages_delivered",
            "Messages queued to their recipients: one per message per receiving connection.",
            self.engine.delivered(),
        )?;
        by_code(
            &mut e,
            "switchboard_connections_closed",
            "Connections ended, by close code (1006: without a close frame).",
            s.closes.iter(),
        )?;
        by_code(
            &mut e,
            "switchboard_errors",
            "error frames sent, by error code.",
            s.errors.iter(),
        )?;
        counter(
            &mut e,
            "switchboard_history_evicted",
            "Messages dropped from history to stay within max_history_bytes.",
            s.history_evicted,
        )?;
        let Some(store) = self.engine.store() else {
            return Ok(());
        };
        let st = store.stats();
        gauge(
            &mut e,
            "switchboard_redis_up",
            "Is the Redis store reachable (1) or not (0)?",
            i64::from(st.up),
        )?;
        gauge(
            &mut e,
            "switchboard_store_inflight",
            "Operations waiting on the store.",
            s.store_inflight as u64,
        )?;
        counter(
            &mut e,
            "switchboard_redis_reconnects",
            "Reconnections after Redis was lost.",
            st.reconnects,
        )?;
        counter(
            &mut e,
            "switchboard_redis_relayed",
            "Messages received from the Redis relay.",
            st.relayed,
        )?;
        if let Some(h) = store.round_trips() {
            h.0.encode(e.encode_descriptor(
                "switchboard_redis_roundtrip_seconds",
                "Round trips to Redis (operations and health pings).",
                None,
                MetricType::Histogram,
            )?)?;
        }
        Ok(())
    }
}

/// The `/metrics` text of the server whose engine this is.
pub(crate) fn render(engine: &Arc<dyn Engine>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(HubCollector {
        engine: engine.clone(),
    }));
    let mut text = String::with_capacity(4096);
    // Writing to a String does not fail; an encoder error would be a bug
    // in a metric's name, caught by the tests.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        tracing::error!(error = %e, "encoding /metrics failed");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_land_in_buckets() {
        let h = RoundTrips::new();
        h.observe(Duration::from_micros(150));
        h.observe(Duration::from_millis(3));
        let mut registry = Registry::default();
        registry.register("rt_seconds", "test", h.0.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(text.contains("# TYPE rt_seconds histogram"), "{text}");
        assert!(text.contains("rt_seconds_count 2"), "{text}");
        assert!(
            text.contains("rt_seconds_bucket{le=\"0.0002\"} 1"),
            "{text}"
        );
        assert!(text.contains("rt_seconds_bucket{le=\"+Inf\"} 2"), "{text}");
    }
}
