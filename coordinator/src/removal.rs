//! What removing a node would cost: the shards whose last in-sync copy it holds.
//!
//! A forced removal (`DELETE /v1/nodes/{id}?force=true`) gives up the node's copies.
//! That is a repair when another in-sync copy survives, and data loss when none
//! does; the second needs the operator to say so (`allow_data_loss=true`). Pure, so
//! the rule is tested from a table; `Cluster::remove_node` asks it.

use crate::shards::record::ShardRecord;

/// The ids of the shards that would have no in-sync copy left without `node`:
/// those where `node` is in sync and no other in-sync holder is still a `member`
/// (a holder already removed by an operator, still named until the reconciler
/// drops it, keeps nothing). A member that is down still counts: its copy comes
/// back with it, and the coordinator keeps waiting for it (the last copy stays).
/// A copy in progress never counts: it is not complete.
pub fn last_copies<'a>(
    records: impl IntoIterator<Item = &'a ShardRecord>,
    node: &str,
    member: impl Fn(&str) -> bool,
) -> Vec<u32> {
    records
        .into_iter()
        .filter(|r| r.in_sync().any(|n| n == node))
        .filter(|r| !r.in_sync().any(|n| n != node && member(n)))
        .map(|r| r.id)
        .collect()
}

/// `0, 3, 7`; at most 20 ids, then how many more.
pub fn list(ids: &[u32]) -> String {
    const SHOWN: usize = 20;
    let mut out: Vec<String> = ids.iter().take(SHOWN).map(u32::to_string).collect();
    if ids.len() > SHOWN {
        out.push(format!("and {} more", ids.len() - SHOWN));
    }
    out.join(", ")
}

/// Serialises forced removals, so two of them at once cannot each count the other
/// node's copy as the survivor.
pub static REMOVALS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shards::record::holders;

    #[test]
    fn only_a_last_in_sync_copy_counts() {
        let gone = |n: &str| n == "x";
        let member = |n: &str| !gone(n);
        #[rustfmt::skip]
        let cases: &[(&str, &str, bool)] = &[
            // (holders: primary, replicas, `*` = copy in progress), node, loses data
            ("a b", "a", false),
            ("a b", "b", false),
            ("a", "a", true),
            ("b a", "a", false),
            ("a b*", "a", true),
            ("a b*", "b", false),
            ("a x", "a", true),
            ("x a", "a", true),
            ("a x c", "a", false),
            ("- a", "a", true),
            ("- a c", "a", false),
            ("c d", "a", false),
            ("-", "a", false),
        ];
        for (spec, node, loses) in cases {
            let rec = holders(7, 1, spec);
            let got = last_copies([&rec], node, member);
            assert_eq!(!got.is_empty(), *loses, "{spec:?} without {node}: {got:?}");
        }
        let recs = [
            holders(0, 1, "a b"),
            holders(1, 1, "a"),
            holders(2, 1, "b a*"),
            holders(3, 1, "c a"),
            holders(4, 1, "x a"),
        ];
        assert_eq!(last_copies(&recs, "a", member), [1, 4]);
        assert_eq!(last_copies(&recs, "b", member), [2]);
        assert_eq!(last_copies(&recs, "z", member), Vec::<u32>::new());
        assert_eq!(list(&[1, 4]), "1, 4");
        let many: Vec<u32> = (0..23).collect();
        assert!(
            list(&many).ends_with("18, 19, and 3 more"),
            "{}",
            list(&many)
        );
    }
}
