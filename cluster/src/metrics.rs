//! Prometheus metrics of a coordinator and a node (`GET /metrics`, the
//! Prometheus text format 0.0.4).
//!
//! Every process has one [`Metrics`]: a registry with the node's family and
//! the coordinator's family, each registered only when the process has that
//! role (the embedded server has both). Counters are named without `_total`:
//! the encoder appends it.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use worldloom_worldgen::RegionCoord;

use crate::ids::WorldId;

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
pub use prometheus_client::metrics::gauge::Gauge;

/// A plugin hook call, by hook.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabels {
    pub hook: String,
}

/// A failed plugin hook, by hook and failure kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub hook: String,
    pub kind: String,
}

/// Where a served chunk came from.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// `generated` or `stored`.
    pub source: &'static str,
}

/// The outcome of one coordinator-to-node request attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `ok`, `retried` (the node was unreachable or busy; the next node was
    /// asked) or `error`.
    pub outcome: &'static str,
}

/// Most distinct regions the `regions_owned` gauge remembers (a bound on
/// its memory; the gauge saturates there).
pub const REGIONS_REMEMBERED: usize = 100_000;

/// What a node measures.
#[derive(Debug)]
pub struct NodeMetrics {
    pub chunks_generated: Counter,
    pub chunks_from_storage: Counter,
    /// Chunks whose plugin failures were not a function of their inputs:
    /// served, not stored.
    pub chunks_transient: Counter,
    /// Seconds a worker spent generating one chunk (core and plugins).
    pub generation_seconds: Histogram,
    pub plugin_calls: Family<HookLabels, Counter>,
    pub plugin_failures: Family<FailureLabels, Counter>,
    /// Jobs waiting for a generation worker.
    pub queue_depth: Gauge,
    /// Node requests being answered.
    pub inflight: Gauge,
    /// Distinct world regions this node has generated chunks for.
    pub regions_owned: Gauge,
    /// Chunks answered and not yet written to storage (write behind).
    pub pending_writes: Gauge,
    /// Generated chunks whose write to storage failed: served, and generated
    /// again when next asked for.
    pub chunk_store_failures: Counter,
    regions: Mutex<HashSet<(WorldId, RegionCoord)>>,
}

impl NodeMetrics {
    fn new() -> Self {
        NodeMetrics {
            chunks_generated: Counter::default(),
            chunks_from_storage: Counter::default(),
            chunks_transient: Counter::default(),
            generation_seconds: Histogram::new([
                0.000_25, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            plugin_calls: Family::default(),
            plugin_failures: Family::default(),
            queue_depth: Gauge::default(),
            inflight: Gauge::default(),
            regions_owned: Gauge::default(),
            pending_writes: Gauge::default(),
            chunk_store_failures: Counter::default(),
            regions: Mutex::new(HashSet::new()),
        }
    }

    fn register(self: &Arc<Self>, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("worldloom_node");
        r.register("chunks_generated", "Chunks this node generated", self.chunks_generated.clone());
        r.register("chunks_from_storage", "Chunks this node served from storage", self.chunks_from_storage.clone());
        r.register(
            "chunks_transient",
            "Chunks served but not stored because a plugin failure was not a function of their inputs",
            self.chunks_transient.clone(),
        );
        r.register(
            "generation_seconds",
            "Time a worker spent generating one chunk, core and plugins",
            self.generation_seconds.clone(),
        );
        r.register("plugin_calls", "Plugin hook calls", self.plugin_calls.clone());
        r.register("plugin_failures", "Plugin hook failures by kind", self.plugin_failures.clone());
        r.register("queue_depth", "Jobs waiting for a generation worker", self.queue_depth.clone());
        r.register("inflight_requests", "Node requests being answered", self.inflight.clone());
        r.register(
            "regions_owned",
            "Distinct world regions this node has generated chunks for",
            self.regions_owned.clone(),
        );
        r.register("pending_writes", "Chunks answered and not yet written to storage", self.pending_writes.clone());
        r.register(
            "chunk_store_failures",
            "Generated chunks whose write to storage failed (served, generated again next time)",
            self.chunk_store_failures.clone(),
        );
    }

    /// Notes that this node generated a chunk of `region`.
    pub fn owns(&self, world: &WorldId, region: RegionCoord) {
        let mut regions = self.regions.lock().expect("regions lock");
        if regions.len() < REGIONS_REMEMBERED && regions.insert((world.clone(), region)) {
            self.regions_owned.set(regions.len() as i64);
        }
    }
}

/// What a coordinator measures.
#[derive(Debug, Default)]
pub struct CoordinatorMetrics {
    /// Chunks sent to clients, by where the node got them.
    pub chunks_served: Family<SourceLabels, Counter>,
    pub node_requests: Family<OutcomeLabels, Counter>,
    pub live_nodes: Gauge,
    pub open_streams: Gauge,
    /// Chunks the open streams remember having sent (summed over streams;
    /// bounded per stream by its square plus a margin).
    pub stream_sent_entries: Gauge,
    /// HTTP requests being answered (a stream counts while it is open).
    pub inflight: Gauge,
}

impl CoordinatorMetrics {
    fn register(self: &Arc<Self>, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("worldloom_coordinator");
        r.register("chunks_served", "Chunks sent to clients, by source", self.chunks_served.clone());
        r.register("node_requests", "Requests to nodes, by outcome", self.node_requests.clone());
        r.register("live_nodes", "Generation nodes currently live", self.live_nodes.clone());
        r.register("open_streams", "Open WebSocket chunk streams", self.open_streams.clone());
        r.register(
            "stream_sent_entries",
            "Chunks the open streams remember having sent",
            self.stream_sent_entries.clone(),
        );
        r.register("inflight_requests", "HTTP requests being answered", self.inflight.clone());
    }

    pub fn served(&self, stored: bool, generated: bool) {
        let source = if generated || !stored { "generated" } else { "stored" };
        self.chunks_served.get_or_create(&SourceLabels { source }).inc();
    }

    pub fn node_request(&self, outcome: &'static str) {
        self.node_requests.get_or_create(&OutcomeLabels { outcome }).inc();
    }
}

/// Counts one piece of work in a gauge for as long as it is alive (work
/// that is abandoned, such as a request whose client went away, is dropped
/// and uncounted too).
#[derive(Debug)]
pub struct InFlight(Gauge);

impl InFlight {
    pub fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A process's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub node: Option<Arc<NodeMetrics>>,
    pub coordinator: Option<Arc<CoordinatorMetrics>>,
}

impl Metrics {
    /// Metrics of a process with the given roles.
    pub fn new(node: bool, coordinator: bool) -> Arc<Metrics> {
        let mut registry = Registry::default();
        let node = node.then(|| Arc::new(NodeMetrics::new()));
        let coordinator = coordinator.then(|| Arc::new(CoordinatorMetrics::default()));
        if let Some(n) = &node {
            n.register(&mut registry);
        }
        if let Some(c) = &coordinator {
            c.register(&mut registry);
        }
        Arc::new(Metrics { registry, node, coordinator })
    }

    /// The node family; a process without the node role gets a detached one
    /// (counted, never shown).
    pub fn node(&self) -> Arc<NodeMetrics> {
        self.node.clone().unwrap_or_else(|| Arc::new(NodeMetrics::new()))
    }

    pub fn coordinator(&self) -> Arc<CoordinatorMetrics> {
        self.coordinator.clone().unwrap_or_default()
    }

    /// The Prometheus text exposition ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_the_prometheus_text_format_and_move() {
        let m = Metrics::new(true, true);
        let n = m.node();
        n.chunks_generated.inc();
        n.plugin_failures.get_or_create(&FailureLabels { hook: "terrain".into(), kind: "timeout".into() }).inc();
        n.generation_seconds.observe(0.003);
        n.owns(&WorldId::parse("w00112233445566aa").unwrap(), RegionCoord { rx: 1, rz: -1 });
        n.pending_writes.set(7);
        n.chunk_store_failures.inc();
        m.coordinator().served(true, false);
        m.coordinator().live_nodes.set(3);
        let text = m.render();
        for want in [
            "# TYPE worldloom_node_chunks_generated_total counter",
            "worldloom_node_chunks_generated_total 1",
            r#"worldloom_node_plugin_failures_total{hook="terrain",kind="timeout"} 1"#,
            "worldloom_node_generation_seconds_count 1",
            "worldloom_node_regions_owned 1",
            "worldloom_node_pending_writes 7",
            "worldloom_node_chunk_store_failures_total 1",
            r#"worldloom_coordinator_chunks_served_total{source="stored"} 1"#,
            "worldloom_coordinator_live_nodes 3",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        assert!(!Metrics::new(true, false).render().contains("coordinator"));
    }
}
