//! Fuzzes the agent lease protocol's JSON (`kiln_api::agent`), both directions: what the
//! server reads from agents and what agents read from the server. None may panic, and what
//! reads must read back the same after being written (server and agent agree on the bytes).
//!
//! Input: a first byte choosing the message type, then its JSON.

#![no_main]

use kiln_api::agent::{
    AgentEvent, CacheQuery, EventsResponse, ImagesReport, LeaseReport, LeaseRequest, LeaseResponse,
    PrepullDone, RegisterAgent, ReportsResponse,
};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Reads `json` as a `T`; when it reads, writes it and reads it back, which must give the same.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(json: &[u8]) {
    let Ok(first) = serde_json::from_slice::<T>(json) else { return };
    let written = serde_json::to_vec(&first).expect("a message read can be written");
    let again: T = match serde_json::from_slice(&written) {
        Ok(again) => again,
        Err(e) => panic!(
            "{} written as {} does not read back: {e}",
            std::any::type_name::<T>(),
            String::from_utf8_lossy(&written)
        ),
    };
    assert_eq!(first, again, "{} changed in a round trip", std::any::type_name::<T>());
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, json)) = data.split_first() else { return };
    match kind % 10 {
        0 => round_trip::<RegisterAgent>(json),
        1 => round_trip::<LeaseRequest>(json),
        2 => round_trip::<LeaseResponse>(json),
        3 => round_trip::<Vec<LeaseReport>>(json),
        4 => round_trip::<Vec<AgentEvent>>(json),
        5 => round_trip::<ReportsResponse>(json),
        6 => round_trip::<EventsResponse>(json),
        7 => round_trip::<ImagesReport>(json),
        8 => round_trip::<PrepullDone>(json),
        _ => round_trip::<CacheQuery>(json),
    }
});
