//! OSV parsing: the three shapes of a file, ranges, severity, errors with positions.

use kiln_scan::{Ecosystem, Range, Severity, parse_osv};

use crate::support::read;

#[test]
fn a_real_rustsec_record_reads_with_its_ranges_and_cvss_severity() {
    let advisories =
        parse_osv(&read("advisories/RUSTSEC-2021-0003.json"), "RUSTSEC-2021-0003.json")
            .expect("parse");
    assert_eq!(advisories.len(), 1);
    let a = &advisories[0];
    assert_eq!(a.id, "RUSTSEC-2021-0003");
    assert_eq!(a.aliases, ["CVE-2021-25900", "GHSA-43w2-9j62-hq99"]);
    assert_eq!(a.summary, "Buffer overflow in SmallVec::insert_many");
    // CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H is 9.8.
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(a.modified, "2026-07-17T15:52:38Z");
    assert_eq!(a.affected.len(), 1);
    let affected = &a.affected[0];
    assert_eq!(affected.ecosystem, Ecosystem::CratesIo);
    assert_eq!(affected.package, "smallvec");
    assert_eq!(affected.release, None);
    assert_eq!(
        affected.ranges,
        [
            Range {
                introduced: Some("0.6.3".into()),
                fixed: Some("0.6.14".into()),
                last_affected: None
            },
            Range {
                introduced: Some("1.0.0".into()),
                fixed: Some("1.6.1".into()),
                last_affected: None
            },
        ]
    );
}

#[test]
fn a_debian_record_names_its_release_and_its_cves() {
    let advisories =
        parse_osv(&read("advisories/DSA-5514-1.json"), "DSA-5514-1.json").expect("parse");
    let a = &advisories[0];
    assert_eq!(a.summary, "glibc - security update");
    assert_eq!(a.aliases, ["CVE-2023-4911", "DEBIAN-CVE-2023-4911"]);
    assert_eq!(a.severity, Severity::Unknown);
    let releases: Vec<_> = a.affected.iter().map(|x| x.release.as_deref()).collect();
    assert_eq!(releases, [Some("11"), Some("12")]);
    assert_eq!(a.affected[1].ranges[0].introduced, None, "introduced 0 is from the start");
    assert_eq!(a.affected[1].ranges[0].fixed.as_deref(), Some("2.36-9+deb12u3"));
}

#[test]
fn an_array_and_json_lines_read_like_single_objects() {
    let one = r#"{"id":"A-1","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"npm","name":"left-pad"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.3.0"}]}]}]}"#;
    let two = r#"{"id":"A-2","modified":"2024-01-01T00:00:00Z","summary":"two"}"#;
    let array = format!("[{one},\n{two}]");
    let lines = format!("{one}\n{two}\n");
    let a = parse_osv(array.as_bytes(), "array.json").expect("array");
    let b = parse_osv(lines.as_bytes(), "lines.jsonl").expect("lines");
    assert_eq!(a, b);
    assert_eq!(a.len(), 2);
    assert_eq!(a[0].affected[0].ecosystem, Ecosystem::Npm);
    assert_eq!(a[1].summary, "two");
}

#[test]
fn severity_comes_from_the_database_then_the_entries_then_cvss_then_urgency() {
    let doc = r#"[
      {"id":"G-1","database_specific":{"severity":"MODERATE"},
       "severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]},
      {"id":"G-2","affected":[{"package":{"ecosystem":"PyPI","name":"x"},"ecosystem_specific":{"severity":"HIGH"}}]},
      {"id":"G-3","severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:L/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"}]},
      {"id":"G-4","affected":[{"package":{"ecosystem":"Debian:12","name":"x"},"ecosystem_specific":{"urgency":"low"}}]},
      {"id":"G-5","severity":[{"type":"Ubuntu","score":"high"}]},
      {"id":"G-6","severity":[{"type":"CVSS_V3","score":"not a vector"}]}
    ]"#;
    let got: Vec<_> = parse_osv(doc.as_bytes(), "s.json")
        .expect("parse")
        .into_iter()
        .map(|a| (a.id, a.severity))
        .collect();
    assert_eq!(
        got,
        [
            ("G-1".to_string(), Severity::Medium),
            ("G-2".to_string(), Severity::High),
            ("G-3".to_string(), Severity::Medium),
            ("G-4".to_string(), Severity::Low),
            ("G-5".to_string(), Severity::High),
            ("G-6".to_string(), Severity::Unknown),
        ]
    );
}

#[test]
fn withdrawn_records_unknown_ecosystems_git_ranges_and_informational_entries_are_left_out() {
    let doc = r#"[
      {"id":"W-1","withdrawn":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"npm","name":"x"}}]},
      {"id":"E-1","affected":[
        {"package":{"ecosystem":"Azure Linux:3","name":"x"}},
        {"package":{"ecosystem":"Maven","name":"y"}},
        {"package":{"ecosystem":"Go","name":"golang.org/x/net"},
         "ranges":[{"type":"GIT","repo":"https://go.googlesource.com/net","events":[{"introduced":"0"},{"fixed":"abc"}]},
                   {"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"0.17.0"}]}]}]}
    ]"#;
    let got = parse_osv(doc.as_bytes(), "x.json").expect("parse");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].affected.len(), 1);
    assert_eq!(got[0].affected[0].ranges.len(), 1);
    assert_eq!(got[0].affected[0].ranges[0].fixed.as_deref(), Some("0.17.0"));

    let unmaintained =
        parse_osv(&read("advisories/RUSTSEC-2021-0139.json"), "RUSTSEC-2021-0139.json")
            .expect("parse");
    assert!(unmaintained[0].affected.is_empty(), "{unmaintained:?}");
}

#[test]
fn last_affected_and_open_ranges() {
    let doc = r#"{"id":"L-1","affected":[{"package":{"ecosystem":"PyPI","name":"x"},
      "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"1.0"},{"last_affected":"1.4"},{"introduced":"2.0"}]}]}]}"#;
    let got = parse_osv(doc.as_bytes(), "l.json").expect("parse");
    assert_eq!(
        got[0].affected[0].ranges,
        [
            Range {
                introduced: Some("1.0".into()),
                fixed: None,
                last_affected: Some("1.4".into())
            },
            Range { introduced: Some("2.0".into()), fixed: None, last_affected: None },
        ]
    );
}

#[test]
fn a_malformed_file_is_refused_with_its_name_and_position() {
    let doc = "{\n  \"id\": \"X-1\",\n  \"affected\": [\n    {\"package\": {\"ecosystem\": \"npm\" \"name\": \"x\"}}\n  ]\n}\n";
    let err = parse_osv(doc.as_bytes(), "advisories/x.json").expect_err("malformed");
    assert_eq!((err.origin.as_str(), err.line, err.column), ("advisories/x.json", 4, 37));
    assert!(err.message.contains("expected `,` or `}`"), "{err}");
    assert!(err.to_string().starts_with("advisories/x.json:4:37: "), "{err}");

    let missing_id = parse_osv(b"{\"modified\": \"2024\"}", "m.json").expect_err("no id");
    assert!(missing_id.message.contains("missing field `id`"), "{missing_id}");

    let truncated = parse_osv(b"[{\"id\": \"A\"},", "t.json").expect_err("truncated");
    assert!(truncated.message.contains("ends inside"), "{truncated}");

    let not_json = parse_osv(b"\n\n  id: yaml", "y.yaml").expect_err("not json");
    assert_eq!((not_json.line, not_json.column), (3, 3));

    let empty = parse_osv(b"  \n", "e.json").expect_err("empty");
    assert!(empty.message.contains("empty"), "{empty}");

    let second_line_bad = "{\"id\":\"A\"}\n{\"id\": 5}\n";
    let err = parse_osv(second_line_bad.as_bytes(), "l.jsonl").expect_err("bad line");
    assert_eq!(err.line, 2, "{err}");
}

#[test]
fn every_fixture_advisory_parses() {
    for dir in ["advisories", "advisories-later", "osv-samples"] {
        for entry in std::fs::read_dir(crate::support::fixture(dir)).expect("dir") {
            let path = entry.expect("entry").path();
            let bytes = std::fs::read(&path).expect("read");
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let parsed = parse_osv(&bytes, &name).expect("fixture parses");
            assert_eq!(parsed.len(), 1, "{name}");
            assert_eq!(format!("{}.json", parsed[0].id), name, "file named by its id");
        }
    }
}
