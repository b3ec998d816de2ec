//! The Lua scripts (one prelude shared by all, one body each) and the decoding of their replies.
//!
//! Every script is one round trip (`EVALSHA`; `redis::Script` loads it on `NOSCRIPT`, e.g. after a
//! Redis restart) and first does a bounded part of freeing dead members (`reap` in the prelude).

use redis::{Script, Value};

const PRELUDE: &str = include_str!("prelude.lua");

/// The scripts, hashed once per [`RedisCounters`](super::RedisCounters).
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) admit: Script,
    pub(crate) release: Script,
    pub(crate) heartbeat: Script,
    pub(crate) join: Script,
    pub(crate) republish: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        let with = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        Scripts {
            admit: with(include_str!("admit.lua")),
            release: with(include_str!("release.lua")),
            heartbeat: with(include_str!("heartbeat.lua")),
            join: with(include_str!("join.lua")),
            republish: with(include_str!("republish.lua")),
        }
    }
}

/// A script's reply: its tag (`ok`, `lost`, `full`) and the values after it.
pub(crate) fn tagged(reply: &Value) -> Option<(&str, &[Value])> {
    match reply {
        Value::Array(items) => {
            let (tag, rest) = items.split_first()?;
            Some((text(tag)?, rest))
        }
        _ => None,
    }
}

/// A string reply (Lua strings arrive as bulk strings).
pub(crate) fn text(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// An integer reply (Lua numbers are truncated to integers by Redis; strings are parsed).
pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}
