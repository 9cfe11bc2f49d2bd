//! Id newtypes. Every id is a uuid v7 (time-ordered), stored as its hyphenated text.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::StoreError;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered id.
            pub fn new() -> Self {
                $name(Uuid::now_v7())
            }

            /// The text stored in the database.
            pub(crate) fn text(&self) -> String {
                self.0.hyphenated().to_string()
            }

            /// Reads an id stored by [`Self::text`].
            pub(crate) fn from_db(s: &str) -> Result<Self, StoreError> {
                Uuid::parse_str(s)
                    .map($name)
                    .map_err(|e| StoreError::Corrupt(format!(concat!($what, " id `{}`: {}"), s, e)))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl FromStr for $name {
            type Err = StoreError;

            fn from_str(s: &str) -> Result<Self, StoreError> {
                Uuid::parse_str(s)
                    .map($name)
                    .map_err(|_| StoreError::Invalid(format!(concat!("`{}` is not a ", $what, " id"), s)))
            }
        }
    };
}

id_type!(
    /// Identifies a project.
    ProjectId,
    "project"
);
id_type!(
    /// Identifies a pipeline.
    PipelineId,
    "pipeline"
);
id_type!(
    /// Identifies a run.
    RunId,
    "run"
);
id_type!(
    /// Identifies a group of runs started together.
    GroupId,
    "run group"
);

id_type!(
    /// Identifies an API token (not its secret).
    TokenId,
    "token"
);
id_type!(
    /// Identifies a service.
    ServiceId,
    "service"
);
id_type!(
    /// Identifies an environment of a project.
    EnvironmentId,
    "environment"
);
id_type!(
    /// Identifies an application's config.
    ConfigAppId,
    "config app"
);
