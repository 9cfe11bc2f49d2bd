//! `etc/os-release`: which distribution release an image is.

/// The release as [`crate::Package::release`] writes it: `VERSION_ID` for Debian and
/// Alpine (`12`, `3.19.1`), `ID:VERSION_ID` for any other distribution (`ubuntu:22.04`), so
/// that Debian's advisories for a release never match another distribution's packages.
pub(crate) fn release(text: &str) -> Option<String> {
    let mut id = None;
    let mut version_id = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"').trim_matches('\'').to_string();
        match key.trim() {
            "ID" => id = Some(value),
            "VERSION_ID" => version_id = Some(value),
            _ => {}
        }
    }
    let id = id?;
    match (id.as_str(), version_id) {
        ("debian" | "alpine", Some(v)) => Some(v),
        (_, Some(v)) => Some(format!("{id}:{v}")),
        // Debian testing/sid have no VERSION_ID.
        ("debian", None) => None,
        (_, None) => Some(id),
    }
}
