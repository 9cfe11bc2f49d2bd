//! apk-tools' version comparison (Alpine), after Gentoo's rules that apk follows:
//! dot-separated numbers, an optional letter, `_suffix[N]`s, then `-rN`.

use std::cmp::Ordering;

/// A parsed apk version.
#[derive(Debug)]
struct ApkVersion<'a> {
    numbers: Vec<&'a str>,
    letter: Option<u8>,
    suffixes: Vec<(i32, u64)>,
    revision: u64,
}

/// The rank of a suffix: pre-releases below 0 (the release), post-releases above.
fn suffix_rank(name: &str) -> Option<i32> {
    Some(match name {
        "alpha" => -4,
        "beta" => -3,
        "pre" => -2,
        "rc" => -1,
        "cvs" => 1,
        "svn" => 2,
        "git" => 3,
        "hg" => 4,
        "p" => 5,
        _ => return None,
    })
}

fn parse(v: &str) -> Option<ApkVersion<'_>> {
    let v = v.trim();
    let (body, revision) = match v.rsplit_once("-r") {
        Some((body, r)) if !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()) => {
            (body, r.parse().ok()?)
        }
        _ => (v, 0),
    };
    let mut parts = body.split('_');
    let core = parts.next()?;
    let bytes = core.as_bytes();
    let (digits, letter) = match bytes.last() {
        Some(c) if c.is_ascii_lowercase() => (&core[..core.len() - 1], Some(*c)),
        _ => (core, None),
    };
    let numbers: Vec<&str> = digits.split('.').collect();
    if numbers.iter().any(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let mut suffixes = Vec::new();
    for suffix in parts {
        let split = suffix.find(|c: char| c.is_ascii_digit()).unwrap_or(suffix.len());
        let (name, num) = suffix.split_at(split);
        let rank = suffix_rank(name)?;
        let num = if num.is_empty() { 0 } else { num.parse().ok()? };
        suffixes.push((rank, num));
    }
    Some(ApkVersion { numbers, letter, suffixes, revision })
}

/// Compares one dot-separated number: the first numerically, later ones with a leading zero
/// as decimal fractions (`1.01 < 1.1`), as Gentoo and apk do.
fn compare_number(a: &str, b: &str, first: bool) -> Ordering {
    if !first && (a.starts_with('0') || b.starts_with('0')) {
        let a = a.trim_end_matches('0');
        let b = b.trim_end_matches('0');
        return a.cmp(b);
    }
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Compares two Alpine versions as `apk version -t` does.
pub(super) fn compare(a: &str, b: &str) -> Ordering {
    let (pa, pb) = match (parse(a), parse(b)) {
        (Some(pa), Some(pb)) => (pa, pb),
        (pa, pb) => return super::unreadable_first(pa.is_some(), pb.is_some(), a, b),
    };
    for (i, (na, nb)) in pa.numbers.iter().zip(&pb.numbers).enumerate() {
        let ord = compare_number(na, nb, i == 0);
        if ord != Ordering::Equal {
            return ord;
        }
    }
    let ord = pa.numbers.len().cmp(&pb.numbers.len());
    if ord != Ordering::Equal {
        return ord;
    }
    let ord = pa.letter.cmp(&pb.letter);
    if ord != Ordering::Equal {
        return ord;
    }
    let len = pa.suffixes.len().max(pb.suffixes.len());
    for k in 0..len {
        let sa = pa.suffixes.get(k).copied().unwrap_or((0, 0));
        let sb = pb.suffixes.get(k).copied().unwrap_or((0, 0));
        let ord = sa.cmp(&sb);
        if ord != Ordering::Equal {
            return ord;
        }
    }
    pa.revision.cmp(&pb.revision)
}
