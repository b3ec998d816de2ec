//! DIDs and DID ranges as numeric intervals, and the interval checks over pools (spec call-control 7).
//!
//! A DID never starts with `+` or `0`, so its digit string and its number are interchangeable; a
//! range's ends must have the same digit count, so `2000-2999` never matches `200`. Overlap and
//! containment are decided on sorted, merged intervals: O(n log n), never pairwise.

use super::issue::Problem;
use super::model::{DidRange, OrgId, TrunkId};

/// Longest DID accepted: 19 digits always fit a `u64` (E.164 numbers have at most 15).
const MAX_DID_DIGITS: usize = 19;

/// Parses one DID (`"2125550100"`) or a range (`"2125550100-2125550199"`).
pub(crate) fn parse_dids(text: &str) -> Result<DidRange, Problem> {
    match text.split_once('-') {
        None => parse_number(text, text).map(|n| DidRange { start: n, end: n }),
        Some((a, b)) => {
            let start = parse_number(a.trim(), text)?;
            let end = parse_number(b.trim(), text)?;
            if a.trim().len() != b.trim().len() {
                return Err(Problem::DidRangeDigitCount(text.to_owned()));
            }
            if start > end {
                return Err(Problem::DidRangeReversed(text.to_owned()));
            }
            Ok(DidRange { start, end })
        }
    }
}

fn parse_number(digits: &str, whole: &str) -> Result<u64, Problem> {
    if digits.starts_with('+') || digits.starts_with('0') {
        return Err(Problem::DidPrefix(whole.to_owned()));
    }
    if digits.is_empty()
        || digits.len() > MAX_DID_DIGITS
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(Problem::DidNotDigits(whole.to_owned()));
    }
    digits
        .parse()
        .map_err(|_| Problem::DidNotDigits(whole.to_owned()))
}

/// Longest public number a ring rule may dial (E.164 has 15 digits; national formats with
/// prefixes stay well below this).
const MAX_PUBLIC_DIGITS: usize = 32;

/// A public number as a ring-rule target: digits, optionally after one `+`. Unlike a DID in a pool,
/// it may start with `0`: a dialled number is often national (spec E3 dials `0804993222`); the
/// organization's outbound rules decide where it goes.
pub(crate) fn is_public_number(text: &str) -> bool {
    let digits = text.strip_prefix('+').unwrap_or(text);
    !digits.is_empty()
        && digits.len() <= MAX_PUBLIC_DIGITS
        && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Sorts and merges intervals (overlapping or adjacent) so containment is one binary search.
pub(crate) fn merge(mut ranges: Vec<DidRange>) -> Vec<DidRange> {
    ranges.sort_unstable_by_key(|r| (r.start, r.end));
    let mut out: Vec<DidRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(1) => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// True when `r` lies entirely inside one interval of `merged` (output of [`merge`]).
pub(crate) fn covers(merged: &[DidRange], r: DidRange) -> bool {
    let i = merged.partition_point(|m| m.start <= r.start);
    i > 0 && merged[i - 1].end >= r.end
}

/// One pool range as the overlap sweep sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolRange {
    pub(crate) trunk: TrunkId,
    pub(crate) range: DidRange,
    pub(crate) org: OrgId,
    /// Index of the `[[did_pool]]` it comes from.
    pub(crate) pool: usize,
}

/// Finds ranges that overlap a range of another organization on the same trunk. Returns, for each
/// such range, `(range, other organization)`. One sweep per trunk over ranges sorted by start,
/// tracking the furthest end reached by any organization and the furthest by any *other* one.
pub(crate) fn cross_org_overlaps(mut ranges: Vec<PoolRange>) -> Vec<(PoolRange, OrgId)> {
    ranges.sort_unstable_by_key(|p| (p.trunk, p.range.start, p.range.end));
    let mut found = Vec::new();
    let mut i = 0;
    while i < ranges.len() {
        let trunk = ranges[i].trunk;
        // (end, org) furthest so far, and furthest among organizations other than `best`'s.
        let mut best: Option<(u64, OrgId)> = None;
        let mut second: Option<(u64, OrgId)> = None;
        while i < ranges.len() && ranges[i].trunk == trunk {
            let p = ranges[i];
            let rival = match best {
                Some((_, org)) if org == p.org => second,
                other => other,
            };
            if let Some((end, org)) = rival {
                if p.range.start <= end {
                    found.push((p, org));
                }
            }
            (best, second) = push_end(best, second, p.range.end, p.org);
            i += 1;
        }
    }
    found
}

type EndMark = Option<(u64, OrgId)>;

fn push_end(best: EndMark, second: EndMark, end: u64, org: OrgId) -> (EndMark, EndMark) {
    match best {
        None => (Some((end, org)), second),
        Some((b_end, b_org)) if b_org == org => (Some((b_end.max(end), org)), second),
        Some((b_end, b_org)) if end > b_end => (Some((end, org)), Some((b_end, b_org))),
        Some(b) => match second {
            Some((s_end, _)) if s_end >= end => (Some(b), second),
            _ => (Some(b), Some((end, org))),
        },
    }
}

/// Writes a range as the file does: `2125550100` or `2125550100-2125550199`.
pub(crate) fn range_text(r: DidRange) -> String {
    if r.start == r.end {
        r.start.to_string()
    } else {
        format!("{}-{}", r.start, r.end)
    }
}
