//! A hash map split into independently growing parts, so that growth never stalls the shard that
//! owns it. A `HashMap` doubles all at once: moving 30 000 transactions (a few hundred bytes
//! each) into a freshly mapped table, page faults included, held a shard for 6–23 ms while calls
//! were ramping up at 4 000 calls/s, which was the post-dial delay tail of the benchmarks. Split
//! into [`PARTS`] maps chosen by a separate keyed hash, each part grows on its own: one growth
//! moves 1/64 of the entries (~0.1 ms at that size), and the parts cross their thresholds at
//! different inserts. Lookups cost one more hash of the key.
//!
//! Kamailio's transaction table avoids the same stall with fixed-size chained buckets; this keeps
//! hashbrown's probing and memory use and only bounds the pause.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// Keyed per map and fast: keys come from the network.
type Fast = foldhash::fast::RandomState;

/// Number of parts.
pub const PARTS: usize = 64;
// `part` takes the top log2(PARTS) bits.
const _: () = assert!(PARTS.is_power_of_two());

/// A part never shrinks below this capacity (shrinking tiny tables would only churn).
const SHRINK_FLOOR: usize = 64;

/// The split map.
pub struct SplitMap<K, V> {
    parts: Box<[HashMap<K, V, Fast>]>,
    /// Chooses the part; independent of the parts' own hashers, whose top bits pick control bytes.
    selector: Fast,
    len: usize,
}

impl<K, V> Default for SplitMap<K, V> {
    fn default() -> Self {
        SplitMap {
            parts: (0..PARTS).map(|_| HashMap::default()).collect(),
            selector: Fast::default(),
            len: 0,
        }
    }
}

impl<K: std::fmt::Debug, V: std::fmt::Debug> std::fmt::Debug for SplitMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Hash + Eq, V> SplitMap<K, V> {
    fn part<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        // The top bits after a Fibonacci multiply: the fast hash's low bits alone are weak for
        // some seeds (sequential integer keys left whole parts empty in one run of the test).
        let mixed = self
            .selector
            .hash_one(key)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (mixed >> (64 - PARTS.trailing_zeros())) as usize
    }

    /// Inserts, returning the value `key` had.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let part = self.part(&key);
        let old = self.parts[part].insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes `key`, returning its value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let part = self.part(key);
        let map = &mut self.parts[part];
        let old = map.remove(key);
        if old.is_some() {
            self.len -= 1;
            // A part left a quarter full gives memory back: a ramp of set-up transactions grows
            // the tables, and a table never shrinks by itself. One part is small, so this is
            // as cheap as its growth.
            if map.capacity() > SHRINK_FLOOR && map.len() * 4 < map.capacity() {
                map.shrink_to(map.len() * 2);
            }
        }
        old
    }

    /// The value of `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.parts[self.part(key)].get(key)
    }

    /// The value of `key`, mutable.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let part = self.part(key);
        self.parts[part].get_mut(key)
    }

    /// True when `key` is present.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }
}

impl<K, V> SplitMap<K, V> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.parts.iter().flat_map(|p| p.iter())
    }

    /// Every key.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }

    /// Every value.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_hash_map() {
        let mut m: SplitMap<String, u32> = SplitMap::default();
        let mut reference = HashMap::new();
        for i in 0..5_000u32 {
            let k = format!("k{}", i % 3_000);
            assert_eq!(m.insert(k.clone(), i), reference.insert(k, i));
            if i % 7 == 0 {
                let gone = format!("k{}", i / 2);
                assert_eq!(m.remove(gone.as_str()), reference.remove(&gone));
            }
        }
        assert_eq!(m.len(), reference.len());
        for (k, v) in &reference {
            assert_eq!(m.get(k.as_str()), Some(v));
            assert!(m.contains_key(k.as_str()));
        }
        assert_eq!(m.iter().count(), reference.len());
        if let Some(v) = m.get_mut("k1") {
            *v = 99;
        }
        assert_eq!(m.get("k1").copied(), reference.get("k1").map(|_| 99));
    }

    #[test]
    fn a_table_emptied_after_a_ramp_gives_its_memory_back() {
        let mut m: SplitMap<u64, [u8; 64]> = SplitMap::default();
        for i in 0..100_000u64 {
            m.insert(i, [0; 64]);
        }
        let grown: usize = m.parts.iter().map(HashMap::capacity).sum();
        for i in 0..99_000u64 {
            m.remove(&i);
        }
        let left: usize = m.parts.iter().map(HashMap::capacity).sum();
        assert_eq!(m.len(), 1_000);
        assert!(left * 8 < grown, "capacity {grown} -> {left}");
        assert!((99_000..100_000).all(|i| m.contains_key(&i)));
    }

    #[test]
    fn entries_spread_over_every_part() {
        let mut m: SplitMap<u64, ()> = SplitMap::default();
        for i in 0..64_000u64 {
            m.insert(i, ());
        }
        let sizes: Vec<usize> = m.parts.iter().map(HashMap::len).collect();
        assert!(sizes.iter().all(|&n| n > 700 && n < 1300), "{sizes:?}");
    }
}
