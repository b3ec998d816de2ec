//! A node's lease: joining under a new epoch, renewing, republishing what it holds, retrying
//! releases Redis did not acknowledge.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::RwLockReadGuard;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::limits::CallKey;

use super::store::{lock, reply_error, Held, Member, RedisCounters, RELEASE_BATCH};
use crate::cluster::error::ClusterError;
use crate::cluster::key::CounterKey;
use crate::cluster::scripts::{int, tagged};

/// Calls per republish script run: bounds each run's time inside Redis.
const REPUBLISH_CHUNK: usize = 256;

/// What a [`RedisCounters::heartbeat`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// The lease was extended.
    Renewed,
    /// The lease was lost (expired, or Redis lost its data): the node joined under `epoch` and
    /// republished every call it holds.
    Rejoined {
        /// The new epoch.
        epoch: u64,
    },
}

impl RedisCounters {
    /// Renews this node's lease (call it every lease / 3; [`spawn_heartbeat`](Self::spawn_heartbeat)
    /// does), joins again and republishes when the lease was lost, then retries queued releases.
    pub async fn heartbeat(&self) -> Result<Renewal, ClusterError> {
        let current = self
            .member
            .read()
            .await
            .as_ref()
            .map(|m| (m.epoch, m.name.clone()));
        let renewal = match current {
            None => self.rejoin(None).await?,
            Some((epoch, name)) => {
                let mut inv = self.invocation(&self.scripts.heartbeat, &name);
                inv.arg(self.lease_ms());
                let reply = self.eval("heartbeat", &inv).await?;
                match tagged(&reply) {
                    Some(("ok", _)) => {
                        *lock(&self.last_renewal) = Some(Instant::now());
                        self.finish_republish().await?;
                        Renewal::Renewed
                    }
                    Some(("lost", _)) => {
                        tracing::warn!(node = %self.node, epoch, "cluster lease lost, joining again");
                        self.rejoin(Some(epoch)).await?
                    }
                    _ => return Err(reply_error("heartbeat", &reply)),
                }
            }
        };
        self.retry_pending().await?;
        Ok(renewal)
    }

    /// Renews every lease / 3 until `stop`, logging when renewal starts and stops failing.
    pub fn spawn_heartbeat(self: Arc<Self>, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.lease / 3);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                match self.heartbeat().await {
                    Ok(_) if failing => {
                        failing = false;
                        tracing::info!(node = %self.node, "cluster lease renewed again");
                    }
                    Ok(_) => {}
                    Err(error) if !failing => {
                        failing = true;
                        tracing::error!(node = %self.node, %error, "cannot renew the cluster lease");
                    }
                    Err(_) => {}
                }
            }
        })
    }

    /// Counts `calls` (held by this node, e.g. rebuilt from the daemon's own call table) in Redis
    /// when Redis does not know them yet; idempotent. They are also remembered, so later automatic
    /// republishes include them. No limit is checked: the calls exist.
    pub async fn republish(
        &self,
        calls: &[(CallKey, Vec<CounterKey>)],
    ) -> Result<(), ClusterError> {
        let fresh: Vec<(CallKey, Held)> = calls
            .iter()
            .map(|(call, counters)| {
                let held = Held {
                    index: 0,
                    counters: counters.clone().into(),
                };
                (*call, held)
            })
            .collect();
        lock(&self.held).extend(fresh.iter().cloned());
        let member = self.member_or_join(None).await?;
        let name = member.as_ref().ok_or(ClusterError::LeaseLost)?.name.clone();
        self.republish_calls(&name, &fresh).await
    }

    /// The current member, joining first when there is none or when it is epoch `stale`.
    pub(super) async fn member_or_join(
        &self,
        stale: Option<u64>,
    ) -> Result<RwLockReadGuard<'_, Option<Member>>, ClusterError> {
        {
            let member = self.member.read().await;
            if member.as_ref().is_some_and(|m| Some(m.epoch) != stale) {
                return Ok(member);
            }
        }
        self.rejoin(stale).await?;
        Ok(self.member.read().await)
    }

    /// Joins under a new epoch unless another task already replaced epoch `stale` (or, with
    /// `None`, already joined), then republishes every held call. Holds the write lock throughout,
    /// so no admission of the old epoch can land after the republish has read the held calls.
    pub(super) async fn rejoin(&self, stale: Option<u64>) -> Result<Renewal, ClusterError> {
        let mut member = self.member.write().await;
        if let Some(m) = member.as_ref() {
            if Some(m.epoch) != stale {
                return Ok(Renewal::Rejoined { epoch: m.epoch });
            }
        }
        let mut inv = self.invocation(&self.scripts.join, &self.node);
        inv.arg(self.lease_ms());
        let reply = self.eval("join", &inv).await?;
        let epoch = match tagged(&reply) {
            Some(("ok", [epoch])) => int(epoch).and_then(|e| u64::try_from(e).ok()),
            _ => None,
        }
        .ok_or_else(|| reply_error("join", &reply))?;
        *lock(&self.last_renewal) = Some(Instant::now());
        let name = format!("{}#{epoch}", self.node);
        tracing::info!(node = %self.node, epoch, "joined the cluster");
        *member = Some(Member {
            epoch,
            name: name.clone(),
            republish_due: true,
        });
        let held: Vec<(CallKey, Held)> = lock(&self.held)
            .iter()
            .map(|(k, h)| (*k, h.clone()))
            .collect();
        self.republish_calls(&name, &held).await?;
        if let Some(m) = member.as_mut() {
            m.republish_due = false;
        }
        Ok(Renewal::Rejoined { epoch })
    }

    /// Completes a republish that a join could not finish (Redis failed half-way), or counts
    /// the calls adopted since the last one (the republish script skips calls Redis knows).
    async fn finish_republish(&self) -> Result<(), ClusterError> {
        let adopted = self.adopt_due.swap(false, Ordering::Relaxed);
        let due = self
            .member
            .read()
            .await
            .as_ref()
            .is_some_and(|m| m.republish_due);
        if !due && !adopted {
            return Ok(());
        }
        let mut member = self.member.write().await;
        let Some(m) = member.as_mut() else {
            return Ok(());
        };
        let held: Vec<(CallKey, Held)> = lock(&self.held)
            .iter()
            .map(|(k, h)| (*k, h.clone()))
            .collect();
        if let Err(e) = self.republish_calls(&m.name, &held).await {
            if adopted {
                self.adopt_due.store(true, Ordering::Relaxed);
            }
            return Err(e);
        }
        m.republish_due = false;
        Ok(())
    }

    async fn republish_calls(
        &self,
        name: &str,
        calls: &[(CallKey, Held)],
    ) -> Result<(), ClusterError> {
        for chunk in calls.chunks(REPUBLISH_CHUNK) {
            let mut inv = self.invocation(&self.scripts.republish, name);
            inv.arg(chunk.len());
            for (call, held) in chunk {
                inv.arg(call.0).arg(held.index).arg(held.counters.len());
                for c in held.counters.iter() {
                    inv.arg(c.as_str());
                }
            }
            let reply = self.eval("republish", &inv).await?;
            match tagged(&reply) {
                Some(("ok", _)) => {}
                Some(("lost", _)) => return Err(ClusterError::LeaseLost),
                _ => return Err(reply_error("republish", &reply)),
            }
        }
        Ok(())
    }

    /// Retries the releases Redis did not acknowledge; stops at the first failure.
    async fn retry_pending(&self) -> Result<(), ClusterError> {
        let pending: Vec<CallKey> = lock(&self.pending).iter().copied().collect();
        for chunk in pending.chunks(RELEASE_BATCH) {
            self.run_release(&self.conn, chunk).await?;
            let mut left = lock(&self.pending);
            for call in chunk {
                left.remove(call);
            }
        }
        Ok(())
    }

    fn lease_ms(&self) -> u64 {
        u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX)
    }
}
