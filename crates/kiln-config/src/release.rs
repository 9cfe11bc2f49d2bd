//! What a release request does to an environment's head (the release everyone gets, the gray
//! one some instances get, the one waiting for approval), decided without I/O: the server reads
//! the head, asks [`decide`], and stores the outcome only if the head did not move meanwhile.
//!
//! The rules: a release whose files equal what its audience already gets is a no-op (seed 003's
//! "only release when changed"); on a protected environment a release (a rollback too) waits
//! for the approval of someone other than who asked, and only one waits at a time; a gray
//! release reaches the named instances only, the others keep the current release, until it is
//! released to all or replaced by a full release; a release is never deleted.

use std::collections::BTreeSet;

/// A release as the decision sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    /// Its number.
    pub number: u32,
    /// Its files' digest.
    pub digest: String,
}

/// A gray release: a release and the instances that get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gray {
    /// The release.
    pub release: Ref,
    /// The instances that get it (never empty).
    pub instances: BTreeSet<String>,
}

/// A release waiting for approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// Its number.
    pub number: u32,
    /// Who asked for it.
    pub requested_by: String,
}

/// An environment's head for one application.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    /// The release every consumer gets (none before the first).
    pub current: Option<Ref>,
    /// The gray release, if one is out.
    pub gray: Option<Gray>,
    /// The release waiting for approval, if one is.
    pub pending: Option<Waiting>,
}

/// What is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask<'a> {
    /// Release rendered files with this digest, to everyone (`instances` empty) or as a gray
    /// release to these instances.
    Release {
        /// The digest of the rendered files.
        digest: &'a str,
        /// The gray release's instances; empty for a release to everyone.
        instances: &'a BTreeSet<String>,
    },
    /// Release an earlier release's files again, to everyone.
    Rollback {
        /// The release whose files come back (it must have been released).
        to: &'a Ref,
    },
    /// Release the gray release to everyone.
    Promote,
    /// Approve the waiting release `number`.
    Approve {
        /// Its number.
        number: u32,
        /// Who approves.
        by: &'a str,
    },
    /// Reject the waiting release `number` (it stays in the history, rejected).
    Reject {
        /// Its number.
        number: u32,
    },
}

/// What to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing: the audience already gets these files, from release `number`.
    Unchanged {
        /// The release that already has them.
        number: u32,
    },
    /// A new release record: released at once, or waiting for approval.
    Record {
        /// Waiting for approval (a protected environment) rather than released.
        pending: bool,
        /// A gray release (to the instances asked) rather than to everyone.
        gray: bool,
    },
    /// The gray release becomes the current one for everyone.
    Promote {
        /// The gray release.
        number: u32,
    },
    /// The waiting release is released (to everyone, or gray if it was asked so).
    Approve {
        /// Its number.
        number: u32,
    },
    /// The waiting release is rejected.
    Reject {
        /// Its number.
        number: u32,
    },
}

/// Why a request is refused; the message says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Another release waits for approval.
    #[error(
        "release {0} is waiting for approval: approve or reject it first (`kiln config approve` / `reject`)"
    )]
    Waiting(u32),
    /// A gray release needs a release for everyone else to keep.
    #[error(
        "a gray release needs an earlier release for the other instances to keep: release to everyone first"
    )]
    GrayFirst,
    /// No gray release to promote.
    #[error("no gray release is out: there is nothing to release to all")]
    NoGray,
    /// The release named is not the one waiting.
    #[error("release {0} is not waiting for approval")]
    NotWaiting(u32),
    /// The asker approves their own release.
    #[error("`{0}` asked for this release: someone else must approve it")]
    OwnApproval(String),
}

/// Decides what `ask` does to `head` on an environment that is `protected` or not.
pub fn decide(head: &Head, protected: bool, ask: &Ask<'_>) -> Result<Outcome, Refusal> {
    let waiting = |head: &Head| head.pending.as_ref().map(|w| w.number);
    match ask {
        Ask::Release { digest, instances } => {
            if let Some(n) = waiting(head) {
                return Err(Refusal::Waiting(n));
            }
            let gray = !instances.is_empty();
            if gray {
                let Some(current) = &head.current else { return Err(Refusal::GrayFirst) };
                match &head.gray {
                    Some(g) if g.release.digest == *digest && g.instances == **instances => {
                        return Ok(Outcome::Unchanged { number: g.release.number });
                    }
                    None if current.digest == *digest => {
                        return Ok(Outcome::Unchanged { number: current.number });
                    }
                    _ => {}
                }
            } else if let (Some(current), None) = (&head.current, &head.gray)
                && current.digest == *digest
            {
                return Ok(Outcome::Unchanged { number: current.number });
            }
            Ok(Outcome::Record { pending: protected, gray })
        }
        Ask::Rollback { to } => {
            if let Some(n) = waiting(head) {
                return Err(Refusal::Waiting(n));
            }
            if let (Some(current), None) = (&head.current, &head.gray)
                && current.digest == to.digest
            {
                return Ok(Outcome::Unchanged { number: current.number });
            }
            Ok(Outcome::Record { pending: protected, gray: false })
        }
        Ask::Promote => match &head.gray {
            Some(g) => Ok(Outcome::Promote { number: g.release.number }),
            None => Err(Refusal::NoGray),
        },
        Ask::Approve { number, by } => match &head.pending {
            Some(w) if w.number == *number && w.requested_by == *by => {
                Err(Refusal::OwnApproval(w.requested_by.clone()))
            }
            Some(w) if w.number == *number => Ok(Outcome::Approve { number: *number }),
            _ => Err(Refusal::NotWaiting(*number)),
        },
        Ask::Reject { number } => match &head.pending {
            Some(w) if w.number == *number => Ok(Outcome::Reject { number: *number }),
            _ => Err(Refusal::NotWaiting(*number)),
        },
    }
}

/// The release an instance gets: the gray one when it is one of the gray release's instances,
/// else the current one.
pub fn serves<'a, T>(
    current: Option<&'a T>,
    gray: Option<(&'a T, &BTreeSet<String>)>,
    instance: Option<&str>,
) -> Option<&'a T> {
    match (gray, instance) {
        (Some((g, instances)), Some(i)) if instances.contains(i) => Some(g),
        _ => current,
    }
}
