//! `parse(render(families)) == families` for families of random names, labels (with the
//! characters that need escaping) and values; and the text of Kiln's own metrics.

use kiln_scrape::{Dialect, Family, Labels, MetricType, Sample, parse, render};
use proptest::prelude::*;

fn label_value() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just('a'),
            Just(','),
            Just('}'),
            Just('"'),
            Just('\\'),
            Just('\n'),
            Just('é'),
            Just(' ')
        ],
        0..8,
    )
    .prop_map(|c| c.into_iter().collect())
}

fn family() -> impl Strategy<Value = Family> {
    (
        "[a-z_:][a-z0-9_:]{0,8}",
        proptest::option::of("[ -~]{0,20}"),
        prop_oneof![
            Just(None),
            Just(Some(MetricType::Gauge)),
            Just(Some(MetricType::Counter)),
            Just(Some(MetricType::Untyped))
        ],
        proptest::collection::btree_map("[a-z_][a-z0-9_]{0,5}", label_value(), 0..4),
        proptest::collection::vec(-1e12f64..1e12, 1..4),
    )
        .prop_map(|(name, help, kind, labels, values)| {
            let samples = values
                .into_iter()
                .enumerate()
                .map(|(i, value)| {
                    let mut labels: Labels = labels.clone();
                    labels.insert("n".into(), i.to_string());
                    Sample { name: name.clone(), labels, value }
                })
                .collect();
            Family {
                name,
                help: help.map(|h| h.trim().to_string()).filter(|h| !h.is_empty()),
                kind,
                samples,
            }
        })
}

proptest! {
    #[test]
    fn rendered_families_read_back(families in proptest::collection::btree_map("[a-z]{1,6}", family(), 1..5)) {
        // One family per name, named as the map says (render merges by name).
        let families: Vec<Family> = families
            .into_iter()
            .map(|(name, mut f)| {
                let name = format!("m_{name}");
                for s in &mut f.samples {
                    s.name = name.clone();
                }
                f.name = name;
                f
            })
            .collect();
        let text = render(&families);
        let back = parse(&text, Dialect::Text, 10_000);
        prop_assert_eq!(back.as_ref(), Ok(&families), "{}", text);
    }
}

/// What prometheus-client 0.25 writes at Kiln's `/metrics` (a counter, a gauge family, a
/// histogram), as Prometheus reads it with the OpenMetrics parser.
#[test]
fn kiln_s_own_openmetrics_text() {
    let text = "# HELP kiln_runs_finished Runs ended since the server started.\n\
# TYPE kiln_runs_finished counter\n\
kiln_runs_finished_total{state=\"success\"} 2\n\
# HELP kiln_agents Connected agents.\n\
# TYPE kiln_agents gauge\n\
kiln_agents 1\n\
# HELP kiln_job_duration_seconds Job attempt durations.\n\
# TYPE kiln_job_duration_seconds histogram\n\
kiln_job_duration_seconds_sum{state=\"success\"} 0.5\n\
kiln_job_duration_seconds_count{state=\"success\"} 2\n\
kiln_job_duration_seconds_bucket{le=\"0.05\",state=\"success\"} 0\n\
kiln_job_duration_seconds_bucket{le=\"+Inf\",state=\"success\"} 2\n\
# EOF\n";
    let f = parse(text, Dialect::OpenMetrics, 100).unwrap_or_else(|e| panic!("{e}"));
    let shapes: Vec<(&str, Option<MetricType>, usize)> =
        f.iter().map(|f| (f.name.as_str(), f.kind, f.samples.len())).collect();
    assert_eq!(
        shapes,
        [
            ("kiln_runs_finished_total", Some(MetricType::Counter), 1),
            ("kiln_agents", Some(MetricType::Gauge), 1),
            ("kiln_job_duration_seconds", Some(MetricType::Histogram), 4),
        ]
    );
    // Re-rendered in the text format, it reads back the same.
    assert_eq!(parse(&render(&f), Dialect::Text, 100).map(|g| g.len()), Ok(3));
}
