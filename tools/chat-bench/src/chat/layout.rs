//! Where each chat client connects, for a cluster of nodes (`--targets`),
//! and whom it is meant to meet (`--layout`).
//!
//! The tool cannot choose partners; the server pairs by interests. So a
//! layout that wants pair p = clients (2p, 2p+1) gives both clients one
//! interest tag of their own (unique to this run and pair), and puts them
//! on two nodes (`across`) or on one (`local`); `mixed` alternates, so one
//! run measures both side by side on the same machine at the same moment.
//! The nodes must run with an `--interest-wait` longer than the time all
//! clients take to connect, or a client tired of waiting takes anyone.

use clap::ValueEnum;

use crate::target::Target;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Layout {
    /// Client i on target i mod N, no interests: pairing as the server likes.
    Any,
    /// Every pair on two different targets.
    Across,
    /// Every pair on one target (pairs spread over the targets).
    Local,
    /// Even pairs across, odd pairs local.
    Mixed,
}

/// Whether client `idx`'s pair is meant to span two nodes.
pub fn is_across(layout: Layout, idx: usize) -> bool {
    let pair = idx / 2;
    match layout {
        Layout::Any => false,
        Layout::Across => true,
        Layout::Local => false,
        Layout::Mixed => pair % 2 == 0,
    }
}

/// Client `idx`'s target (an index into the targets) under `layout`.
pub fn target_index(layout: Layout, idx: usize, targets: usize) -> usize {
    let n = targets.max(1);
    // Pairs of one kind take the nodes in turn (in `mixed`, every other
    // pair is of the same kind).
    let slot = match layout {
        Layout::Mixed => idx / 4,
        _ => idx / 2,
    };
    match layout {
        Layout::Any => idx % n,
        // The second client of an across pair goes one node further on.
        _ if is_across(layout, idx) && idx % 2 == 1 => (slot + 1) % n,
        _ => slot % n,
    }
}

/// The connection target of every client: the node from `target_index`,
/// its path carrying the pair's own interest tag (unless `Any`). `run` tags
/// this run's pairs so that two runs on one cluster never meet.
pub fn plan(layout: Layout, targets: &[Target], clients: usize, run: u32) -> Vec<Target> {
    (0..clients)
        .map(|idx| {
            let mut t = targets[target_index(layout, idx, targets.len())].clone();
            if layout != Layout::Any {
                let sep = if t.path.contains('?') { '&' } else { '?' };
                // Tags are 1-32 characters: b<6 digits>p<pair> fits.
                t.path = format!("{}{sep}interests=b{}p{}", t.path, run % 1_000_000, idx / 2);
            }
            t
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::parse_url;

    fn two() -> Vec<Target> {
        vec![
            parse_url("ws://127.0.0.1:1/").unwrap(),
            parse_url("ws://127.0.0.1:2/").unwrap(),
        ]
    }

    fn ports(p: &[Target]) -> Vec<u16> {
        p.iter().map(|t| t.addr.port()).collect()
    }

    #[test]
    fn across_pairs_span_two_targets_and_local_pairs_one() {
        let across = plan(Layout::Across, &two(), 6, 7);
        assert_eq!(ports(&across), [1, 2, 2, 1, 1, 2]);
        assert_eq!(across[2].path, "/?interests=b7p1");
        assert_eq!(across[3].path, "/?interests=b7p1");
        let local = plan(Layout::Local, &two(), 6, 7);
        assert_eq!(ports(&local), [1, 1, 2, 2, 1, 1]);
        let mixed = plan(Layout::Mixed, &two(), 8, 7);
        assert_eq!(ports(&mixed), [1, 2, 1, 1, 2, 1, 2, 2]);
        assert!(is_across(Layout::Mixed, 1) && !is_across(Layout::Mixed, 2));
        let any = plan(Layout::Any, &two(), 4, 7);
        assert_eq!(ports(&any), [1, 2, 1, 2]);
        assert_eq!(any[0].path, "/");
    }

    #[test]
    fn one_target_keeps_every_pair_on_it() {
        let one = &two()[..1];
        assert_eq!(ports(&plan(Layout::Across, one, 4, 1)), [1, 1, 1, 1]);
    }

    #[test]
    fn tags_are_valid_interests() {
        let p = plan(Layout::Across, &two(), 20_000, u32::MAX);
        let tag = p[19_999].path.split('=').nth(1).unwrap();
        assert!(tag.len() <= 32, "{tag}");
    }
}
