//! Release decisions: what a release, rollback, gray release, promotion, approval or rejection
//! does to an environment's head, and what an instance is served.

use std::collections::BTreeSet;

use kiln_config::release::{Ask, Gray, Head, Outcome, Ref, Refusal, Waiting, decide, serves};

fn r(number: u32, digest: &str) -> Ref {
    Ref { number, digest: digest.into() }
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn head(current: Option<Ref>, gray: Option<(Ref, &[&str])>, pending: Option<(u32, &str)>) -> Head {
    Head {
        current,
        gray: gray.map(|(release, ids)| Gray { release, instances: set(ids) }),
        pending: pending.map(|(number, by)| Waiting { number, requested_by: by.into() }),
    }
}

#[test]
fn a_release_is_recorded_unless_everyone_already_gets_its_files() {
    let none = set(&[]);
    let first = decide(&Head::default(), false, &Ask::Release { digest: "d1", instances: &none });
    assert_eq!(first, Ok(Outcome::Record { pending: false, gray: false }));
    let h = head(Some(r(3, "d1")), None, None);
    assert_eq!(
        decide(&h, false, &Ask::Release { digest: "d1", instances: &none }),
        Ok(Outcome::Unchanged { number: 3 })
    );
    assert_eq!(
        decide(&h, false, &Ask::Release { digest: "d2", instances: &none }),
        Ok(Outcome::Record { pending: false, gray: false })
    );
    // With a gray release out, the same files as the current release are a change: the gray
    // instances go back to them.
    let g = head(Some(r(3, "d1")), Some((r(4, "d2"), &["i1"])), None);
    assert_eq!(
        decide(&g, false, &Ask::Release { digest: "d1", instances: &none }),
        Ok(Outcome::Record { pending: false, gray: false })
    );
}

#[test]
fn a_protected_environment_records_a_pending_release_and_one_waits_at_a_time() {
    let none = set(&[]);
    let h = head(Some(r(1, "d1")), None, None);
    assert_eq!(
        decide(&h, true, &Ask::Release { digest: "d2", instances: &none }),
        Ok(Outcome::Record { pending: true, gray: false })
    );
    assert_eq!(
        decide(&h, true, &Ask::Release { digest: "d1", instances: &none }),
        Ok(Outcome::Unchanged { number: 1 }),
        "a no-op needs no approval"
    );
    let waiting = head(Some(r(1, "d1")), None, Some((2, "alice")));
    assert_eq!(
        decide(&waiting, true, &Ask::Release { digest: "d3", instances: &none }),
        Err(Refusal::Waiting(2))
    );
    assert_eq!(
        decide(&waiting, true, &Ask::Rollback { to: &r(1, "d1") }),
        Err(Refusal::Waiting(2))
    );
}

#[test]
fn approval_needs_someone_else_and_the_waiting_number() {
    let waiting = head(Some(r(1, "d1")), None, Some((2, "alice")));
    assert_eq!(
        decide(&waiting, true, &Ask::Approve { number: 2, by: "alice" }),
        Err(Refusal::OwnApproval("alice".into()))
    );
    assert_eq!(
        decide(&waiting, true, &Ask::Approve { number: 2, by: "bob" }),
        Ok(Outcome::Approve { number: 2 })
    );
    assert_eq!(
        decide(&waiting, true, &Ask::Approve { number: 1, by: "bob" }),
        Err(Refusal::NotWaiting(1))
    );
    assert_eq!(
        decide(&waiting, true, &Ask::Reject { number: 2 }),
        Ok(Outcome::Reject { number: 2 })
    );
    let idle = head(Some(r(1, "d1")), None, None);
    assert_eq!(decide(&idle, true, &Ask::Reject { number: 2 }), Err(Refusal::NotWaiting(2)));
    let message = Refusal::OwnApproval("alice".into()).to_string();
    assert!(message.contains("someone else must approve"), "{message}");
}

#[test]
fn a_rollback_is_a_new_release_unless_its_files_are_current() {
    let h = head(Some(r(5, "d5")), None, None);
    assert_eq!(
        decide(&h, false, &Ask::Rollback { to: &r(2, "d2") }),
        Ok(Outcome::Record { pending: false, gray: false })
    );
    assert_eq!(
        decide(&h, false, &Ask::Rollback { to: &r(3, "d5") }),
        Ok(Outcome::Unchanged { number: 5 })
    );
    assert_eq!(
        decide(&h, true, &Ask::Rollback { to: &r(2, "d2") }),
        Ok(Outcome::Record { pending: true, gray: false })
    );
}

#[test]
fn a_gray_release_needs_a_current_one_and_is_promoted_to_all() {
    let ids = set(&["i1", "i2"]);
    assert_eq!(
        decide(&Head::default(), false, &Ask::Release { digest: "d1", instances: &ids }),
        Err(Refusal::GrayFirst)
    );
    let h = head(Some(r(1, "d1")), None, None);
    assert_eq!(
        decide(&h, false, &Ask::Release { digest: "d2", instances: &ids }),
        Ok(Outcome::Record { pending: false, gray: true })
    );
    assert_eq!(
        decide(&h, false, &Ask::Release { digest: "d1", instances: &ids }),
        Ok(Outcome::Unchanged { number: 1 })
    );
    let g = head(Some(r(1, "d1")), Some((r(2, "d2"), &["i1", "i2"])), None);
    assert_eq!(
        decide(&g, false, &Ask::Release { digest: "d2", instances: &ids }),
        Ok(Outcome::Unchanged { number: 2 })
    );
    assert_eq!(
        decide(&g, false, &Ask::Release { digest: "d2", instances: &set(&["i3"]) }),
        Ok(Outcome::Record { pending: false, gray: true }),
        "the same files to other instances replace the gray release"
    );
    assert_eq!(decide(&g, false, &Ask::Promote), Ok(Outcome::Promote { number: 2 }));
    assert_eq!(decide(&h, false, &Ask::Promote), Err(Refusal::NoGray));
}

#[test]
fn only_the_gray_instances_are_served_the_gray_release() {
    let ids = set(&["i1"]);
    let (current, gray) = ("release 1", "release 2");
    assert_eq!(serves(Some(&current), Some((&gray, &ids)), Some("i1")), Some(&gray));
    assert_eq!(serves(Some(&current), Some((&gray, &ids)), Some("i2")), Some(&current));
    assert_eq!(serves(Some(&current), Some((&gray, &ids)), None), Some(&current));
    assert_eq!(serves(Some(&current), None, Some("i1")), Some(&current));
    assert_eq!(serves::<&str>(None, None, Some("i1")), None);
}
