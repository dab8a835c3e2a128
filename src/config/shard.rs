//! `--shard K/N`: which users one instance of a fleet takes.
//!
//! Large sites keep mail on shared storage read by many hosts. With shards,
//! each of N instances takes the users whose stable hash falls in its
//! shard, so together they report exactly what one instance would, each
//! with its own state. The hash must never change between versions (a
//! change would move users between shards): FNV-1a over the user name's
//! bytes, then Lamping and Veach's jump consistent hash, so that growing
//! from N to N+1 shards moves only about 1/(N+1) of the users.

use std::fmt;

/// Shard `index` (0-based) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    /// Parses `K/N` with 1 ≤ K ≤ N (shards are numbered from 1, as people
    /// count hosts).
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("shard must be K/N with 1 <= K <= N (e.g. 2/3), not {text:?}");
        let (k, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let k: u32 = k.trim().parse().map_err(|_| bad())?;
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        if k == 0 || n == 0 || k > n || n > 1 << 20 {
            return Err(bad());
        }
        Ok(Shard {
            index: k - 1,
            count: n,
        })
    }

    /// Whether this shard takes `user`.
    pub fn owns(&self, user: &str) -> bool {
        shard_of(user, self.count) == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.count)
    }
}

/// The 0-based shard of `user` among `count`.
pub fn shard_of(user: &str, count: u32) -> u32 {
    jump(fnv1a(user.as_bytes()), count)
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Jump consistent hash (Lamping and Veach, 2014).
fn jump(mut key: u64, buckets: u32) -> u32 {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_k_of_n() {
        for (text, ok) in [
            ("1/1", Some("1/1")),
            ("2/3", Some("2/3")),
            (" 3 / 3 ", Some("3/3")),
            ("0/3", None),
            ("4/3", None),
            ("1/0", None),
            ("-1/3", None),
            ("1.5/3", None),
            ("3", None),
            ("", None),
        ] {
            let got = Shard::parse(text).ok().map(|s| s.to_string());
            assert_eq!(got.as_deref(), ok, "{text:?}");
        }
    }

    /// Fixed values: the hash must never change, or users would move
    /// between shards on an upgrade.
    #[test]
    fn the_hash_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let got: Vec<u32> = ["alice@example.org", "bob@example.org", "carol", "u1", "u2"]
            .iter()
            .map(|u| shard_of(u, 3))
            .collect();
        assert_eq!(got, GOLDEN);
    }
    const GOLDEN: [u32; 5] = [1, 1, 2, 1, 1];

    #[test]
    fn every_user_has_exactly_one_shard_and_shards_are_even() {
        let n = 4;
        let shards: Vec<Shard> = (1..=n)
            .map(|k| Shard::parse(&format!("{k}/{n}")).unwrap())
            .collect();
        let mut sizes = vec![0usize; n as usize];
        for i in 0..10_000 {
            let user = format!("user{i}@example.org");
            let owners: Vec<usize> = (0..n as usize).filter(|&k| shards[k].owns(&user)).collect();
            assert_eq!(owners.len(), 1, "{user}");
            sizes[owners[0]] += 1;
        }
        for s in sizes {
            assert!((2_200..=2_800).contains(&s), "uneven: {s}");
        }
    }

    #[test]
    fn growing_by_one_shard_moves_few_users() {
        let moved = (0..10_000)
            .filter(|i| {
                let u = format!("user{i}");
                shard_of(&u, 4) != shard_of(&u, 5)
            })
            .count();
        // About 1/5 move; a modulo hash would move about 4/5.
        assert!((1_700..=2_300).contains(&moved), "{moved}");
    }
}
