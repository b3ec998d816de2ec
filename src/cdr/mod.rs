//! Call detail records: one JSON line per call that was admitted or refused by a limit, written
//! by a thread of its own so a slow disk never stalls a shard ([`writer`]).
//!
//! The B2BUA fills a [`CallRecord`] from what it already knows (no clock reads: times are the
//! engine's `Instant`s), the writer turns those into wall-clock times as it writes. Fields, in
//! order, as written:
//!
//! | field | meaning |
//! | --- | --- |
//! | `call` | callgate's call id (as in `/calls`), a string |
//! | `a_call_id`, `b_call_id` | the caller's Call-ID, the answered callee leg's (null: none) |
//! | `caller`, `callee` | From and To URIs of the caller's INVITE |
//! | `trunk` | the trunk on the path (inbound: arrival; outbound: the one that answered), or null |
//! | `path` | every counter the call held: `{level, name, counter}` |
//! | `start`, `answer`, `end` | RFC 3339 UTC, milliseconds; `answer` null when unanswered |
//! | `duration_secs` | answer to end (0 when unanswered) |
//! | `outcome` | `answered`, `rejected`, `failed`, `cancelled` (as `callgate_calls_total`) |
//! | `ended_by` | `caller`, `callee` or `callgate` |
//! | `reason` | why: `bye`, `cancel`, `final_response`, `ring_timeout`, `max_call_duration`, ... |
//! | `status` | the final status callgate sent the caller for its INVITE, or null |
//! | `refused_by` | `{level, name, counter}` of the full counter of a rejected call, or null |

pub mod writer;

use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

/// One counter, by name (ids change with every reload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CounterRef {
    /// `server`, `service_provider`, `organization`, `user`, `extension`, `trunk`.
    pub level: String,
    /// The entity's name.
    pub name: String,
    /// `public`, `internal`, `max_calls`, ...
    pub counter: String,
}

/// Who ended a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ender {
    /// The calling side (BYE, CANCEL, its connection).
    Caller,
    /// The called side (BYE, a final failure, no answer from it).
    Callee,
    /// callgate itself (a timer, the operator, the drain, a limit).
    Callgate,
}

/// What a call was, as the B2BUA saw it.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// Call id.
    pub call: u64,
    /// The caller's Call-ID.
    pub a_call_id: String,
    /// The answered callee leg's Call-ID.
    pub b_call_id: Option<String>,
    /// From of the caller's INVITE.
    pub caller: String,
    /// To of the caller's INVITE.
    pub callee: String,
    /// Counters held.
    pub path: Vec<CounterRef>,
    /// When the INVITE arrived.
    pub started: Instant,
    /// When a callee answered.
    pub answered: Option<Instant>,
    /// When the call ended.
    pub ended: Instant,
    /// `answered`, `rejected`, `failed`, `cancelled`.
    pub outcome: &'static str,
    /// Who ended it.
    pub ended_by: Ender,
    /// Why, in one word.
    pub reason: &'static str,
    /// The final status sent to the caller.
    pub status: Option<u16>,
    /// The counter that refused a rejected call.
    pub refused_by: Option<CounterRef>,
}

/// The JSON line of a record.
#[derive(Serialize)]
struct Line<'a> {
    call: String,
    a_call_id: &'a str,
    b_call_id: Option<&'a str>,
    caller: &'a str,
    callee: &'a str,
    trunk: Option<&'a str>,
    path: &'a [CounterRef],
    start: String,
    answer: Option<String>,
    end: String,
    duration_secs: f64,
    outcome: &'a str,
    ended_by: Ender,
    reason: &'a str,
    status: Option<u16>,
    refused_by: Option<&'a CounterRef>,
}

impl CallRecord {
    /// The record as one JSON line (with its newline), times placed on the wall clock by
    /// `anchor`: a `(SystemTime, Instant)` pair read together.
    pub fn to_line(&self, anchor: (SystemTime, Instant)) -> String {
        let wall = |t: Instant| rfc3339(at(anchor, t));
        let duration = self
            .answered
            .map_or(Duration::ZERO, |a| self.ended.saturating_duration_since(a));
        let line = Line {
            call: self.call.to_string(),
            a_call_id: &self.a_call_id,
            b_call_id: self.b_call_id.as_deref(),
            caller: &self.caller,
            callee: &self.callee,
            trunk: self
                .path
                .iter()
                .find(|c| c.level == "trunk")
                .map(|c| c.name.as_str()),
            path: &self.path,
            start: wall(self.started),
            answer: self.answered.map(wall),
            end: wall(self.ended),
            duration_secs: (duration.as_millis() as f64) / 1000.0,
            outcome: self.outcome,
            ended_by: self.ended_by,
            reason: self.reason,
            status: self.status,
            refused_by: self.refused_by.as_ref(),
        };
        let mut out = serde_json::to_string(&line).unwrap_or_else(|_| String::from("{}"));
        out.push('\n');
        out
    }
}

/// `t` on the wall clock of `anchor`.
fn at(anchor: (SystemTime, Instant), t: Instant) -> SystemTime {
    let (wall, mono) = anchor;
    if t <= mono {
        wall.checked_sub(mono - t).unwrap_or(wall)
    } else {
        wall + (t - mono)
    }
}

/// RFC 3339 in UTC with milliseconds (`2026-12-02T04:55:01.123Z`).
fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_utc_with_milliseconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_187_301_123);
        assert_eq!(rfc3339(t), "2026-12-02T04:55:01.123Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn a_record_is_one_json_line_with_its_trunk_and_duration() {
        let mono = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_187_300);
        let r = CallRecord {
            call: 257,
            a_call_id: "a@x".into(),
            b_call_id: Some("b@y".into()),
            caller: "sip:200@pbx".into(),
            callee: "sip:3125559999@cg".into(),
            path: vec![CounterRef {
                level: "trunk".into(),
                name: "carrier".into(),
                counter: "max_calls".into(),
            }],
            started: mono,
            answered: Some(mono + Duration::from_millis(1500)),
            ended: mono + Duration::from_millis(4000),
            outcome: "answered",
            ended_by: Ender::Caller,
            reason: "bye",
            status: Some(200),
            refused_by: None,
        };
        let line = r.to_line((wall, mono));
        assert!(line.ends_with("}\n") && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["call"], "257");
        assert_eq!(v["trunk"], "carrier");
        assert_eq!(v["start"], "2026-12-02T04:55:00.000Z");
        assert_eq!(v["answer"], "2026-12-02T04:55:01.500Z");
        assert_eq!(v["duration_secs"], 2.5);
        assert_eq!(v["ended_by"], "caller");
        assert!(v["refused_by"].is_null());
    }
}
