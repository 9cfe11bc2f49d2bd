//! Version comparison by each ecosystem's rules.
//!
//! - Debian: dpkg's algorithm (epoch, upstream version, revision; `~` sorts before
//!   everything, even the end), a port of dpkg's `verrevcmp`;
//! - Alpine: apk-tools' rules (numbers, a letter, `_alpha`/`_beta`/`_pre`/`_rc` below the
//!   release, `_cvs`/`_svn`/`_git`/`_hg`/`_p` above it, then `-rN`);
//! - crates.io, npm, Go: semver 2.0 (the `semver` crate; pre-releases before the release);
//!   a leading `v` (Go) or `=` is dropped and missing minor/patch numbers count as 0;
//! - PyPI: PEP 440 (`pep440_rs`: `1.0.dev0 < 1.0a1 < 1.0rc1 < 1.0 < 1.0.post1`, epochs).
//!
//! A version an ecosystem's parser refuses is still ordered: below every version it can
//! read, and among such versions by a natural comparison (runs of digits as numbers, other
//! runs as text). So the order stays total (a malformed installed version counts as older
//! than any fix) and nothing panics.

mod apk;
mod dpkg;

use std::cmp::Ordering;

use crate::Ecosystem;

/// Compares two versions of a package of `eco` by that ecosystem's rules.
pub fn compare(eco: Ecosystem, a: &str, b: &str) -> Ordering {
    match eco {
        Ecosystem::Debian => dpkg::compare(a, b),
        Ecosystem::Alpine => apk::compare(a, b),
        Ecosystem::CratesIo | Ecosystem::Npm | Ecosystem::Go => compare_semver(a, b),
        Ecosystem::PyPI => compare_pep440(a, b),
    }
}

/// Parses a semver version leniently: `v1.2` and `=1.2` read as `1.2.0`.
fn lenient_semver(v: &str) -> Option<semver::Version> {
    let v = v.trim();
    let v = v.strip_prefix('=').unwrap_or(v).trim();
    let v = v.strip_prefix('v').unwrap_or(v);
    if let Ok(parsed) = semver::Version::parse(v) {
        return Some(parsed);
    }
    // Missing minor/patch numbers: split the numeric core from a `-pre`/`+build` tail.
    let tail_at = v.find(['-', '+']).unwrap_or(v.len());
    let (core, tail) = v.split_at(tail_at);
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty() || parts.len() > 3 {
        return None;
    }
    let mut padded = parts.join(".");
    for _ in parts.len()..3 {
        padded.push_str(".0");
    }
    padded.push_str(tail);
    semver::Version::parse(&padded).ok()
}

fn compare_semver(a: &str, b: &str) -> Ordering {
    match (lenient_semver(a), lenient_semver(b)) {
        (Some(pa), Some(pb)) => pa.cmp_precedence(&pb),
        (pa, pb) => unreadable_first(pa.is_some(), pb.is_some(), a, b),
    }
}

/// The order between versions of which at least one could not be read: unreadable ones
/// first, naturally ordered among themselves.
pub(crate) fn unreadable_first(a_read: bool, b_read: bool, a: &str, b: &str) -> Ordering {
    a_read.cmp(&b_read).then_with(|| natural(a, b))
}

fn compare_pep440(a: &str, b: &str) -> Ordering {
    match (a.trim().parse::<pep440_rs::Version>(), b.trim().parse::<pep440_rs::Version>()) {
        (Ok(pa), Ok(pb)) => pa.cmp(&pb),
        (pa, pb) => unreadable_first(pa.is_ok(), pb.is_ok(), a, b),
    }
}

/// Natural order: runs of ASCII digits compare as numbers, everything else byte by byte.
pub(crate) fn natural(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let si = i;
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let na = trim_zeros(&a[si..i]);
            let nb = trim_zeros(&b[sj..j]);
            let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if ord != Ordering::Equal {
                return ord;
            }
        } else {
            let ord = a[i].cmp(&b[j]);
            if ord != Ordering::Equal {
                return ord;
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j))
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let first = digits.iter().position(|&d| d != b'0').unwrap_or(digits.len());
    &digits[first..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_reads_numbers() {
        assert_eq!(natural("1.10", "1.9"), Ordering::Greater);
        assert_eq!(natural("1.010", "1.10"), Ordering::Equal);
        assert_eq!(natural("abc", "abd"), Ordering::Less);
        assert_eq!(natural("1.0", "1.0.1"), Ordering::Less);
    }

    #[test]
    fn lenient_semver_pads_and_strips() {
        assert_eq!(lenient_semver("v1.2").unwrap().to_string(), "1.2.0");
        assert_eq!(lenient_semver("=1").unwrap().to_string(), "1.0.0");
        assert_eq!(lenient_semver("1.2-rc.1").unwrap().to_string(), "1.2.0-rc.1");
        assert!(lenient_semver("not a version").is_none());
    }
}
