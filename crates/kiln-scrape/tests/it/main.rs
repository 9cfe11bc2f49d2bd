//! Properties of the scrape crate: whatever families are rendered read back the same, and
//! Kiln's own `/metrics` text (prometheus-client's OpenMetrics) reads as Prometheus reads it.

mod props;
