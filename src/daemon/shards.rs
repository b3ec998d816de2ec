//! The handle on every engine shard: operator commands fan out to all of them (or go to the one
//! shard that owns a call, named in the call's number) and their answers are added up.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::driver::Command;
use super::health::Health;
use crate::admin::CallView;
use crate::b2bua::shard_of_call;

/// Command queues of the shards, in shard order.
pub struct Shards {
    commands: Vec<mpsc::Sender<Command>>,
    health: Arc<Health>,
}

impl Shards {
    /// A handle over the shards' command queues.
    pub fn new(commands: Vec<mpsc::Sender<Command>>, health: Arc<Health>) -> Self {
        Shards { commands, health }
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.commands.len()
    }

    /// True when there is no shard (never, once started).
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// Every shard is running and went round its loop recently.
    pub fn healthy(&self, now: Instant) -> bool {
        let stalled = self.health.stalled(now);
        if !stalled.is_empty() {
            tracing::warn!(shards = ?stalled, "engine shards not making progress");
        }
        stalled.is_empty() && self.commands.iter().all(|c| !c.is_closed())
    }

    /// Tells every shard to stop admitting and end its calls.
    pub async fn drain(&self) {
        for tx in &self.commands {
            let _ = tx.send(Command::Drain).await;
        }
    }

    /// Asks every shard and collects the answers of those that replied.
    pub async fn ask_all<T>(&self, make: impl Fn(oneshot::Sender<T>) -> Command) -> Vec<T> {
        let mut replies = Vec::with_capacity(self.commands.len());
        for tx in &self.commands {
            let (reply, rx) = oneshot::channel();
            if tx.send(make(reply)).await.is_ok() {
                replies.push(rx);
            }
        }
        let mut answers = Vec::with_capacity(replies.len());
        for rx in replies {
            if let Ok(a) = rx.await {
                answers.push(a);
            }
        }
        answers
    }

    /// [`Shards::ask_all`] from a synchronous caller on a multi-threaded runtime (the admin API).
    pub fn ask_all_blocking<T>(&self, make: impl Fn(oneshot::Sender<T>) -> Command) -> Vec<T> {
        let replies: Vec<_> = self
            .commands
            .iter()
            .filter_map(|tx| {
                let (reply, rx) = oneshot::channel();
                tx.try_send(make(reply)).ok().map(|()| rx)
            })
            .collect();
        tokio::task::block_in_place(|| {
            replies
                .into_iter()
                .filter_map(|rx| rx.blocking_recv().ok())
                .collect()
        })
    }

    /// Calls in progress on all shards.
    pub async fn calls(&self) -> usize {
        self.ask_all(Command::Count).await.into_iter().sum()
    }

    /// Calls plus teardown requests awaiting an answer, on all shards.
    pub async fn busy(&self) -> usize {
        self.ask_all(Command::Busy).await.into_iter().sum()
    }

    /// The calls in progress on all shards (admin API).
    pub fn call_views_blocking(&self) -> Vec<CallView> {
        self.ask_all_blocking(Command::Calls)
            .into_iter()
            .flatten()
            .collect()
    }

    /// Ends call `id` on the shard that owns it (admin API); false when there is no such call.
    pub fn end_call_blocking(&self, id: u64) -> bool {
        let Some(tx) = self.commands.get(shard_of_call(id)) else {
            return false;
        };
        let (reply, rx) = oneshot::channel();
        if tx.try_send(Command::EndCall(id, reply)).is_err() {
            return false;
        }
        tokio::task::block_in_place(|| rx.blocking_recv().unwrap_or(false))
    }
}
