//! Properties of version comparison on arbitrary strings: it never panics, it is
//! antisymmetric and transitive (a total order), and equal strings compare equal.

use std::cmp::Ordering;

use kiln_scan::{Ecosystem, version::compare};
use proptest::prelude::*;

/// Version-like strings: the characters versions are made of, biased towards digits and
/// separators, plus now and then anything at all.
fn version() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[0-9]{1,3}(([.~+:_-]|[a-z]{1,3})[0-9]{0,3}){0,5}",
        1 => "[0-9a-z.~+:_!-]{0,12}",
        1 => any::<String>(),
    ]
}

fn ecosystem() -> impl Strategy<Value = Ecosystem> {
    prop::sample::select(Ecosystem::ALL.to_vec())
}

#[test]
fn an_unreadable_version_sorts_below_every_readable_one() {
    // Without that rule `1.0.0-rc < 1.0.0 < 1.0.0-r!` but `1.0.0-rc > 1.0.0-r!` (by text).
    for eco in
        [Ecosystem::CratesIo, Ecosystem::Npm, Ecosystem::Go, Ecosystem::PyPI, Ecosystem::Alpine]
    {
        assert_eq!(compare(eco, "1.0.0-r!", "0.0.1"), Ordering::Less, "{eco}");
        assert_eq!(compare(eco, "1.0.0-r!", "1.0.0-r#"), Ordering::Less, "{eco}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn comparison_is_a_total_order(eco in ecosystem(), a in version(), b in version(), c in version()) {
        prop_assert_eq!(compare(eco, &a, &a), Ordering::Equal);
        let ab = compare(eco, &a, &b);
        prop_assert_eq!(ab.reverse(), compare(eco, &b, &a), "{} vs {}", a, b);
        let bc = compare(eco, &b, &c);
        if ab != Ordering::Greater && bc != Ordering::Greater {
            prop_assert_ne!(compare(eco, &a, &c), Ordering::Greater, "{} <= {} <= {}", a, b, c);
        }
    }
}
