//! Bans across the nodes of a cluster (`--redis`): a ban made here is
//! queued for the cluster thread, which publishes it; a ban another node
//! made is put in force here without being shared again.

use super::bans::By;
use super::SafetyHandle;

/// Bans waiting for the cluster thread at most (it takes them every turn;
/// more are dropped and stay on this node only).
const MAX_SHARED_BANS: usize = 1000;

/// A ban as nodes of a cluster hand it to each other.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SharedBan {
    /// As given (an address or range).
    pub address: String,
    /// How long from now.
    pub minutes: u64,
    /// Why.
    pub reason: String,
    /// Who made it.
    pub by: By,
    /// The ban on `address` was lifted (`minutes` and `reason` unused).
    #[serde(default)]
    pub lifted: bool,
}

impl SafetyHandle {
    /// `--redis`: bans made here from now on are kept for
    /// [`SafetyHandle::take_shared_bans`].
    pub fn share_bans(&self) {
        if let Ok(mut s) = self.shared.shared_bans.lock() {
            s.get_or_insert_with(Vec::new);
        }
    }

    /// Bans made here since the last call (for the other nodes).
    pub fn take_shared_bans(&self) -> Vec<SharedBan> {
        match self.shared.shared_bans.lock() {
            Ok(mut s) => s.as_mut().map(std::mem::take).unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    pub(super) fn share(&self, ban: SharedBan) {
        if let Ok(mut s) = self.shared.shared_bans.lock() {
            if let Some(list) = s.as_mut().filter(|l| l.len() < MAX_SHARED_BANS) {
                list.push(ban);
            }
        }
    }

    /// A ban another node made: in force here too (not shared again).
    pub fn apply_shared_ban(&self, ban: &SharedBan, now_ms: u64) {
        if ban.lifted {
            if self
                .state()
                .bans
                .remove_address(&ban.address, now_ms / 1000)
            {
                log::info!("ban on {} lifted on another node", ban.address);
            }
            return;
        }
        let made = self.state().bans.add(
            &ban.address,
            ban.minutes,
            &ban.reason,
            ban.by,
            now_ms / 1000,
        );
        match made {
            Ok(b) => {
                log::info!("ban #{} on {} from another node", b.id, b.address);
                self.ban_made(ban.by);
            }
            Err(e) => log::warn!("a ban from another node was refused: {e}"),
        }
    }
}
