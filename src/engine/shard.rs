//! Which engine shard a received message belongs to. Every shard owns its calls and their
//! transactions outright, so every message of a call must reach the same shard:
//!
//! - a response goes where its top Via branch says: callgate's branches carry the marker of the
//!   shard that sent the request ([`crate::sip::ids`]);
//! - a request inside a B-leg dialog carries callgate's Call-ID, which carries the marker too;
//! - any other request goes by a keyed hash of its Call-ID, so an A leg's INVITE, CANCEL, ACK,
//!   re-INVITE and BYE (one Call-ID) meet on one shard.
//!
//! Pure: the daemon's receive side calls it after parsing, before handing the message over.

use std::hash::BuildHasher;
use std::net::SocketAddr;

use crate::sip::ids::{shard_of_branch, shard_of_call_id, MAX_SHARDS};
use crate::sip::Message;

/// The mapping for a fixed number of shards.
#[derive(Clone)]
pub struct ShardMap {
    shards: usize,
    /// Keyed per process: Call-IDs come from the network, and an unkeyed hash would let a sender
    /// aim every call at one shard.
    hasher: foldhash::fast::RandomState,
}

impl ShardMap {
    /// A map over `shards` shards (at least 1, at most [`MAX_SHARDS`]).
    pub fn new(shards: usize) -> Self {
        ShardMap {
            shards: shards.clamp(1, MAX_SHARDS),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.shards
    }

    /// True never: a map has at least one shard (for clippy's `len` convention).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The shard that owns `msg`.
    pub fn shard_of(&self, msg: &Message) -> usize {
        if self.shards == 1 {
            return 0;
        }
        let parts = msg.parts();
        let marked = match msg {
            Message::Response(_) => parts.branch().and_then(|b| shard_of_branch(b.as_str())),
            Message::Request(_) => shard_of_call_id(parts.call_id()),
        };
        match marked {
            Some(s) if s < self.shards => s,
            _ => self.hash(parts.call_id().as_bytes()),
        }
    }

    /// The shard that answers input that could not be parsed (it has no trustworthy Call-ID):
    /// by source, so one sender's garbage stays on one shard.
    pub fn shard_of_source(&self, source: SocketAddr) -> usize {
        if self.shards == 1 {
            return 0;
        }
        (self.hasher.hash_one(source) % self.shards as u64) as usize
    }

    fn hash(&self, key: &[u8]) -> usize {
        (self.hasher.hash_one(key) % self.shards as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::ids::Ids;
    use bytes::Bytes;
    use rand::SeedableRng;

    fn parse(text: String) -> Message {
        crate::sip::parse_datagram(Bytes::from(text.replace('\n', "\r\n")))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn request(method: &str, call_id: &str, to_tag: &str) -> Message {
        parse(format!(
            "{method} sip:1@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKt1\nFrom: <sip:a@x>;tag=f\nTo: <sip:b@y>{to_tag}\nCall-ID: {call_id}\nCSeq: 1 {method}\nMax-Forwards: 70\nContent-Length: 0\n\n"
        ))
    }

    fn response(branch: &str, call_id: &str) -> Message {
        parse(format!(
            "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\nFrom: <sip:a@x>;tag=f\nTo: <sip:b@y>;tag=t\nCall-ID: {call_id}\nCSeq: 1 INVITE\nContent-Length: 0\n\n"
        ))
    }

    fn ids(shard: u8) -> Ids {
        Ids::new(shard, rand::rngs::StdRng::from_rng(&mut rand::rng()))
    }

    #[test]
    fn responses_follow_the_branch_marker_whatever_their_call_id() {
        let map = ShardMap::new(4);
        for shard in 0..4u8 {
            let branch = ids(shard).branch();
            for call_id in ["a@x", "b@y", "cg3-00@z"] {
                assert_eq!(
                    map.shard_of(&response(&branch, call_id)),
                    usize::from(shard)
                );
            }
        }
    }

    #[test]
    fn requests_in_our_dialogs_follow_the_call_id_marker() {
        let map = ShardMap::new(3);
        for shard in 0..3u8 {
            let call_id = ids(shard).call_id("node");
            for method in ["BYE", "INVITE", "ACK", "INFO"] {
                let msg = request(method, &call_id, ";tag=t");
                assert_eq!(map.shard_of(&msg), usize::from(shard), "{method}");
            }
        }
    }

    #[test]
    fn every_request_of_a_callers_dialog_meets_on_one_shard() {
        let map = ShardMap::new(2);
        let mut seen = [0usize; 2];
        for n in 0..200 {
            let call_id = format!("{n}-4242@127.0.0.9");
            let shard = map.shard_of(&request("INVITE", &call_id, ""));
            seen[shard] += 1;
            for (method, tag) in [("CANCEL", ""), ("ACK", ";tag=t"), ("BYE", ";tag=t")] {
                assert_eq!(map.shard_of(&request(method, &call_id, tag)), shard);
            }
        }
        // The keyed hash spreads SIPp-style Call-IDs over both shards.
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }

    #[test]
    fn a_marker_naming_a_missing_shard_falls_back_to_the_hash() {
        let map = ShardMap::new(2);
        let call_id = ids(9).call_id("n");
        let a = map.shard_of(&request("BYE", &call_id, ";tag=t"));
        assert!(a < 2);
        assert_eq!(map.shard_of(&request("BYE", &call_id, ";tag=t")), a);
    }

    #[test]
    fn one_shard_takes_everything() {
        let map = ShardMap::new(1);
        assert_eq!(map.shard_of(&response(&ids(5).branch(), "x")), 0);
        assert_eq!(map.shard_of_source(([127, 0, 0, 1], 9).into()), 0);
    }
}
