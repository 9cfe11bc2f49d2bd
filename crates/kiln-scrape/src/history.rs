//! A short history of scraped series for the UI's plots, kept in memory and bounded three
//! ways so that a chatty target cannot eat the server's memory: points older than
//! [`Limits::keep_ms`] are dropped, a series keeps at most [`Limits::max_points`] points (the
//! oldest go first), and at most [`Limits::max_series`] series are kept (a new series beyond
//! that is refused and counted, until old ones age out).
//!
//! Invariant: every series' points are in strictly increasing time order.

use std::collections::{HashMap, VecDeque};

use crate::{Family, Labels};

/// One hour, in milliseconds: how far back [`Limits::for_interval`] keeps points.
pub const KEEP_MS: i64 = 3_600_000;
/// The most points one series keeps (an hour at 5 s; at 1 s, the last 12 minutes).
pub const MAX_POINTS: usize = 720;
/// The most series one history keeps.
pub const MAX_SERIES: usize = 1000;

/// The bounds of a [`History`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Points older than this (before the newest `prune` time) are dropped.
    pub keep_ms: i64,
    /// The most points of one series.
    pub max_points: usize,
    /// The most series.
    pub max_series: usize,
}

impl Limits {
    /// An hour of points at one point per `interval_ms`, at most [`MAX_POINTS`] per series,
    /// at most [`MAX_SERIES`] series.
    pub fn for_interval(interval_ms: u64) -> Limits {
        let per_hour = (KEEP_MS as u64).div_ceil(interval_ms.max(1)) + 1;
        Limits {
            keep_ms: KEEP_MS,
            max_points: usize::try_from(per_hour).unwrap_or(MAX_POINTS).min(MAX_POINTS),
            max_series: MAX_SERIES,
        }
    }
}

/// A series and its points, as [`History::series`] returns them.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The sample name.
    pub name: String,
    /// Its labels.
    pub labels: Labels,
    /// `(unix ms, value)`, oldest first.
    pub points: Vec<(i64, f64)>,
}

/// The last points of every series, bounded by [`Limits`].
#[derive(Debug, Clone)]
pub struct History {
    limits: Limits,
    series: HashMap<(String, Labels), VecDeque<(i64, f64)>>,
    refused: u64,
}

impl History {
    /// An empty history with these bounds.
    pub fn new(limits: Limits) -> History {
        History { limits, series: HashMap::new(), refused: 0 }
    }

    /// Changes the bounds (a rule applied again with another interval); series over the new
    /// point bound lose their oldest points now, series over the series bound age out.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
        for points in self.series.values_mut() {
            while points.len() > limits.max_points {
                points.pop_front();
            }
        }
    }

    /// Adds every sample of `families` as a point at `at_ms`. A point not newer than its
    /// series' last one is ignored; a new series beyond the bound is refused.
    pub fn record(&mut self, at_ms: i64, families: &[Family]) {
        for s in families.iter().flat_map(|f| &f.samples) {
            let key = (s.name.clone(), s.labels.clone());
            let full = self.series.len() >= self.limits.max_series;
            if full && !self.series.contains_key(&key) {
                self.refused += 1;
                continue;
            }
            let points = self.series.entry(key).or_default();
            if points.back().is_some_and(|(t, _)| *t >= at_ms) {
                continue;
            }
            points.push_back((at_ms, s.value));
            while points.len() > self.limits.max_points {
                points.pop_front();
            }
        }
    }

    /// Drops points older than `now_ms - keep_ms`, and series left with none.
    pub fn prune(&mut self, now_ms: i64) {
        let oldest = now_ms.saturating_sub(self.limits.keep_ms);
        self.series.retain(|_, points| {
            while points.front().is_some_and(|(t, _)| *t < oldest) {
                points.pop_front();
            }
            !points.is_empty()
        });
    }

    /// The series `keep` selects (by name and labels), with their points at or after
    /// `since_ms`, sorted by name then labels; series with no such point are left out.
    pub fn series(
        &self,
        keep: impl Fn(&str, &Labels) -> bool,
        since_ms: Option<i64>,
    ) -> Vec<Series> {
        let since = since_ms.unwrap_or(i64::MIN);
        let mut out: Vec<Series> = self
            .series
            .iter()
            .filter(|((name, labels), _)| keep(name, labels))
            .filter_map(|((name, labels), points)| {
                let points: Vec<(i64, f64)> =
                    points.iter().copied().filter(|(t, _)| *t >= since).collect();
                (!points.is_empty()).then(|| Series {
                    name: name.clone(),
                    labels: labels.clone(),
                    points,
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        out
    }

    /// How many series are kept.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether no series is kept.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// New series refused because the history held [`Limits::max_series`] already.
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sample;

    fn page(samples: &[(&str, &str, f64)]) -> Vec<Family> {
        samples
            .iter()
            .map(|(name, instance, value)| Family {
                name: name.to_string(),
                help: None,
                kind: None,
                samples: vec![Sample {
                    name: name.to_string(),
                    labels: [("instance".to_string(), instance.to_string())].into(),
                    value: *value,
                }],
            })
            .collect()
    }

    #[test]
    fn limits_follow_the_interval_and_are_capped() {
        assert_eq!(Limits::for_interval(15_000).max_points, 241);
        assert_eq!(Limits::for_interval(1_000).max_points, MAX_POINTS);
        assert_eq!(Limits::for_interval(0).max_points, MAX_POINTS);
    }

    #[test]
    fn points_are_bounded_in_count_and_age_and_stay_in_order() {
        let mut h = History::new(Limits { keep_ms: 100, max_points: 3, max_series: 10 });
        for t in [10, 20, 20, 15, 30, 40] {
            h.record(t, &page(&[("x", "a", t as f64)]));
        }
        let s = h.series(|_, _| true, None);
        assert_eq!(s[0].points, [(20, 20.0), (30, 30.0), (40, 40.0)]);
        h.prune(135);
        assert_eq!(h.series(|_, _| true, None)[0].points, [(40, 40.0)]);
        assert_eq!(h.series(|_, _| true, Some(41)), []);
        h.prune(1000);
        assert!(h.is_empty());
    }

    #[test]
    fn series_beyond_the_bound_are_refused_until_old_ones_age_out() {
        let mut h = History::new(Limits { keep_ms: 100, max_points: 5, max_series: 2 });
        h.record(1, &page(&[("x", "a", 1.0), ("x", "b", 1.0), ("x", "c", 1.0)]));
        assert_eq!((h.len(), h.refused()), (2, 1));
        h.prune(200);
        h.record(201, &page(&[("x", "c", 2.0)]));
        let s = h.series(|_, l| l["instance"] == "c", None);
        assert_eq!(s[0].points, [(201, 2.0)]);
    }

    #[test]
    fn tighter_limits_trim_at_once() {
        let mut h = History::new(Limits { keep_ms: 100, max_points: 5, max_series: 2 });
        for t in 1..=5 {
            h.record(t, &page(&[("x", "a", 0.0)]));
        }
        h.set_limits(Limits { keep_ms: 100, max_points: 2, max_series: 2 });
        assert_eq!(h.series(|_, _| true, None)[0].points, [(4, 0.0), (5, 0.0)]);
    }
}
