//! Key → shard mapping and the rendezvous score used by placement (SPEC §4).
//!
//! Both use XXH3-64 (seeded), a stable, documented, fast 64-bit hash: its output for
//! given bytes and seed never changes across versions or platforms, so a key maps to
//! the same shard forever.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// `shard = XXH3-64(key bytes) mod shards`.
pub fn shard_for_key(key: &[u8], shards: u32) -> u32 {
    (xxh3_64(key) % u64::from(shards.max(1))) as u32
}

/// Weighted rendezvous score of `node` for `shard`: the highest-scoring eligible
/// nodes hold the shard. `-weight / ln(u)` with `u` uniform in (0, 1) gives each node
/// a share of shards proportional to its weight, and removing a node moves only the
/// shards it held.
pub fn rendezvous_score(node: &str, shard: u32, weight: f64) -> f64 {
    let h = xxh3_64_with_seed(node.as_bytes(), u64::from(shard));
    // 53 random bits → u in (0, 1), never exactly 0 or 1.
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -weight / u.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_known_values() {
        // Pinned: changing these would move every key of every existing cluster.
        assert_eq!(shard_for_key(b"", 64), (xxh3_64(b"") % 64) as u32);
        assert_eq!(xxh3_64(b"hello"), 0x9555e8555c62dcfd);
        assert_eq!(
            shard_for_key(b"hello", 64),
            0x9555e8555c62dcfd_u64 as u32 % 64
        );
    }

    #[test]
    fn keys_spread_over_shards() {
        let mut counts = [0u32; 64];
        for i in 0..64_000 {
            counts[shard_for_key(format!("user/{i}").as_bytes(), 64) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn score_respects_weight() {
        let wins = (0..10_000u32)
            .filter(|s| rendezvous_score("a", *s, 2.0) > rendezvous_score("b", *s, 1.0))
            .count();
        assert!(
            (6_200..7_100).contains(&wins),
            "weight 2 vs 1 wins {wins}/10000, want ~2/3"
        );
    }
}
