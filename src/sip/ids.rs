//! Identifiers callgate generates: tags, branches and Call-IDs (RFC 3261 19.3: globally unique
//! and cryptographically random). Each carries 64 bits from a CSPRNG plus the marker of the
//! engine shard that owns the dialog or transaction, so the receive side can hand a response (by
//! its top Via branch) or a request inside one of callgate's dialogs (by its Call-ID) to the
//! shard that holds its state, without a shared table.
//!
//! Format: `cg<shard in hex>-<16 hex digits>`; branches add the RFC 3261 magic cookie in front,
//! Call-IDs the node name after `@`. The shard marker is the only part two identifiers share.
//!
//! Owns: generation and marker parsing. Does not own: the choice of shard for a message without
//! a marker (the engine's dispatcher hashes the Call-ID).

use rand::rngs::StdRng;
use rand::Rng;

/// Largest number of engine shards a marker can name.
pub const MAX_SHARDS: usize = 256;

/// Prefix of every marker.
const MARKER: &str = "cg";
/// The RFC 3261 17.2.3 branch cookie.
const COOKIE: &str = "z9hG4bK";

/// Generator of one shard's identifiers. Seeded once (by the driver, from the OS); cheap to
/// call per message (ChaCha12, no system call).
pub struct Ids {
    shard: u8,
    rng: StdRng,
}

impl std::fmt::Debug for Ids {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The generator state is a secret: never in logs.
        f.debug_struct("Ids").field("shard", &self.shard).finish()
    }
}

impl Ids {
    /// A generator for `shard` drawing from `rng` (a CSPRNG: `StdRng` is ChaCha12).
    pub fn new(shard: u8, rng: StdRng) -> Self {
        Ids { shard, rng }
    }

    /// The shard these identifiers name.
    pub fn shard(&self) -> u8 {
        self.shard
    }

    /// A From/To tag.
    pub fn tag(&mut self) -> String {
        let mut s = String::with_capacity(22);
        self.write_token(&mut s);
        s
    }

    /// A Via branch with the RFC 3261 magic cookie.
    pub fn branch(&mut self) -> String {
        let mut s = String::with_capacity(29);
        s.push_str(COOKIE);
        self.write_token(&mut s);
        s
    }

    /// A Call-ID for a dialog callgate starts, `token@node`.
    pub fn call_id(&mut self, node: &str) -> String {
        let mut s = String::with_capacity(23 + node.len());
        self.write_token(&mut s);
        s.push('@');
        s.push_str(node);
        s
    }

    fn write_token(&mut self, s: &mut String) {
        use std::fmt::Write;
        let random = self.rng.next_u64();
        // Writing into a String cannot fail.
        let _ = write!(s, "{MARKER}{:x}-{random:016x}", self.shard);
    }
}

/// Marker of the trunk driver's identifiers (REGISTER and OPTIONS to providers). `t` is no hex
/// digit, so no shard marker can ever read as it.
const TRUNK_MARKER: &str = "cgt-";

/// A branch for the trunk driver's requests: cookie, [`TRUNK_MARKER`], 64 random bits. The
/// receive side hands responses carrying it to the trunk driver, not to a shard.
pub fn trunk_branch(rng: &mut impl Rng) -> String {
    format!("{COOKIE}{TRUNK_MARKER}{:016x}", rng.next_u64())
}

/// A Call-ID or tag for the trunk driver, `cgt-<16 hex>` (`@node` appended by the caller for a
/// Call-ID).
pub fn trunk_token(rng: &mut impl Rng) -> String {
    format!("{TRUNK_MARKER}{:016x}", rng.next_u64())
}

/// Whether `branch` is one of the trunk driver's.
pub fn is_trunk_branch(branch: &str) -> bool {
    branch
        .strip_prefix(COOKIE)
        .is_some_and(|b| b.starts_with(TRUNK_MARKER))
}

/// The shard named by a token that starts with a marker (`cg<hex>-`), if any.
fn shard_of_token(token: &str) -> Option<usize> {
    let rest = token.strip_prefix(MARKER)?;
    let end = rest.find('-')?;
    let hex = &rest[..end];
    if hex.is_empty() || hex.len() > 2 {
        return None;
    }
    usize::from_str_radix(hex, 16).ok()
}

/// The shard marked in a branch callgate generated (responses to our client transactions).
pub fn shard_of_branch(branch: &str) -> Option<usize> {
    shard_of_token(branch.strip_prefix(COOKIE)?)
}

/// The shard marked in a Call-ID callgate generated (requests inside our B-leg dialogs).
pub fn shard_of_call_id(call_id: &str) -> Option<usize> {
    shard_of_token(call_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ids(shard: u8) -> Ids {
        Ids::new(shard, StdRng::from_rng(&mut rand::rng()))
    }

    #[test]
    fn markers_name_the_generating_shard() {
        for shard in [0u8, 1, 7, 15, 16, 255] {
            let mut g = ids(shard);
            assert_eq!(shard_of_branch(&g.branch()), Some(usize::from(shard)));
            assert_eq!(
                shard_of_call_id(&g.call_id("node")),
                Some(usize::from(shard))
            );
            assert_eq!(shard_of_token(&g.tag()), Some(usize::from(shard)));
        }
    }

    #[test]
    fn foreign_identifiers_carry_no_marker() {
        for s in [
            "1-1234@127.0.0.1",
            "a84b4c76e66710",
            "cg-12",
            "cgzz-1",
            "cg123-4",
            "",
        ] {
            assert_eq!(shard_of_call_id(s), None, "{s}");
        }
        assert_eq!(shard_of_branch("z9hG4bK776asdhds"), None);
        assert_eq!(shard_of_branch("cg1-0011"), None, "no cookie, not ours");
    }

    #[test]
    fn trunk_markers_never_name_a_shard() {
        let mut rng = StdRng::from_rng(&mut rand::rng());
        let branch = trunk_branch(&mut rng);
        assert!(is_trunk_branch(&branch), "{branch}");
        assert_eq!(shard_of_branch(&branch), None);
        assert_eq!(shard_of_call_id(&trunk_token(&mut rng)), None);
        for shard in [0u8, 15, 255] {
            assert!(!is_trunk_branch(&ids(shard).branch()));
        }
        assert!(!is_trunk_branch("cgt-0011"), "no cookie, not ours");
    }

    fn common_prefix(a: &str, b: &str) -> usize {
        a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
    }

    fn common_suffix(a: &str, b: &str) -> usize {
        a.bytes()
            .rev()
            .zip(b.bytes().rev())
            .take_while(|(x, y)| x == y)
            .count()
    }

    /// 1 000 of each kind: all distinct, and what all of them share is exactly the fixed part
    /// (cookie, marker, `@node`) and nothing of the random part.
    #[test]
    fn generated_identifiers_are_distinct_and_share_only_the_marker() {
        let mut g = ids(3);
        type Make = Box<dyn Fn(&mut Ids) -> String>;
        let kinds: [(&str, usize, usize, Make); 3] = [
            ("tag", "cg3-".len(), 0, Box::new(|g| g.tag())),
            ("branch", "z9hG4bKcg3-".len(), 0, Box::new(|g| g.branch())),
            (
                "call-id",
                "cg3-".len(),
                "@n".len(),
                Box::new(|g| g.call_id("n")),
            ),
        ];
        for (kind, fixed_prefix, fixed_suffix, make) in kinds {
            let all: Vec<String> = (0..1000).map(|_| make(&mut g)).collect();
            let unique: std::collections::HashSet<&String> = all.iter().collect();
            assert_eq!(unique.len(), all.len(), "{kind}s repeat");
            let prefix = all.iter().map(|s| common_prefix(&all[0], s)).min();
            let suffix = all.iter().map(|s| common_suffix(&all[0], s)).min();
            assert_eq!(
                prefix,
                Some(fixed_prefix),
                "{kind}s share a prefix: {}",
                all[0]
            );
            assert_eq!(
                suffix,
                Some(fixed_suffix),
                "{kind}s share a suffix: {}",
                all[0]
            );
            // At least 64 random bits: 16 hex digits after the marker.
            let random = &all[0][fixed_prefix..all[0].len() - fixed_suffix];
            assert_eq!(random.len(), 16, "{kind}: {random}");
            assert!(random.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn two_generators_of_one_shard_do_not_collide() {
        let (mut a, mut b) = (ids(0), ids(0));
        let seen: std::collections::HashSet<String> =
            (0..500).flat_map(|_| [a.tag(), b.tag()]).collect();
        assert_eq!(seen.len(), 1000);
    }
}
