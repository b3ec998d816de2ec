//! RFC 3261 §17 transactions, sans-IO, with the RFC 6026 `Accepted` states.
//!
//! Owns: the four transaction machines (Figures 5-8), their timers, transaction matching
//! (§17.1.3, §17.2.3, RFC 2543 fallback, CANCEL matching of §9.2) and the [`Layer`] that routes
//! inbound messages to machines by [`TransactionKey`]. Does not own: message parsing or building
//! (the ACK for a non-2xx response is built by the driver on [`ClientAction::SendAck`]), sockets,
//! the clock, the 100 Trying decision (the TU sends it through `respond`), dialogs, and the ACK
//! for a 2xx (a TU job, RFC 3261 §13.2.2.4).
//!
//! The machines never see a parsed message: requests and responses they (re)transmit are opaque
//! `Bytes`; responses travelling up to the TU are an opaque handle `M` chosen by the driver.
//!
//! Driver contract, for every machine and for the layer: after every input (`handle`,
//! `handle_timeout`, `on_request`, ...) execute the appended actions in order, then re-arm the
//! one wake-up timer from `poll_timeout()`. Waking early or late is harmless; a timer input whose
//! deadline has not come is ignored.

pub mod invite_client;
pub mod invite_server;
pub mod key;
pub mod layer;
pub mod non_invite_client;
pub mod non_invite_server;
pub mod sip_keys;
pub mod timers;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use bytes::Bytes;

pub use invite_client::InviteClient;
pub use invite_server::InviteServer;
pub use key::{MethodKey, Rfc2543Fields, Role, TransactionKey};
pub use layer::{Action, Dispatch, Layer, LayerAction, RequestKind, ResponseDispatch};
pub use non_invite_client::NonInviteClient;
pub use non_invite_server::NonInviteServer;
pub use timers::{Timer, TimerConfig};

/// An input to a client transaction ([`InviteClient`], [`NonInviteClient`]).
#[derive(Debug)]
pub enum ClientInput<M> {
    /// A response matched to this transaction; `response` is the driver's handle to it.
    Response {
        /// Status code (100..=699; anything else is ignored).
        status: u16,
        /// The response, passed back up in [`ClientAction::ToUser`] / [`ClientAction::SendAck`].
        response: M,
    },
    /// A timer's deadline has passed (see `handle_timeout` for the usual path).
    TimerFired(Timer),
    /// The transport failed to send this transaction's request or ACK (§17.1.4).
    TransportError,
}

/// What a client transaction asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientAction<M> {
    /// Send these bytes (the request or a retransmission of it) to the transaction's destination.
    Transmit(Bytes),
    /// Pass this response to the TU.
    ToUser(M),
    /// INVITE only: build the ACK for this non-2xx final response (§17.1.1.3: from the original
    /// request and this response's To) and send it to the request's destination.
    SendAck(M),
    /// Timer B or F fired: tell the TU the request timed out (408 semantics).
    TimedOut,
    /// Tell the TU the transport failed.
    TransportError,
    /// The machine reached Terminated; the driver may drop it.
    Terminated,
}

/// An input to a server transaction ([`InviteServer`], [`NonInviteServer`]).
#[derive(Debug)]
pub enum ServerInput {
    /// A retransmission of the request that created the transaction.
    Request,
    /// An ACK matching this INVITE transaction (ignored by non-INVITE servers).
    Ack,
    /// The TU responds; `bytes` is the serialized response.
    Respond {
        /// Status code (100..=699; anything else is ignored).
        status: u16,
        /// The response as it goes on the wire.
        bytes: Bytes,
    },
    /// A timer's deadline has passed (see `handle_timeout` for the usual path).
    TimerFired(Timer),
    /// The transport failed to send a response of this transaction (§17.2.4).
    TransportError,
}

/// What a server transaction asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerAction {
    /// Send these bytes (a response or a retransmission of it) to the response destination
    /// (§18.2.2).
    Transmit(Bytes),
    /// INVITE in Accepted (RFC 6026): an ACK matched this transaction; it belongs to the TU.
    AckReceived,
    /// INVITE: the ACK for the non-2xx final response arrived (Completed -> Confirmed). Informational.
    Confirmed,
    /// Timer H fired: no ACK for the non-2xx final response. Tell the TU.
    TimedOut,
    /// Tell the TU the transport failed.
    TransportError,
    /// The machine reached Terminated; the driver may drop it.
    Terminated,
}

/// Errors of the transaction layer API (misuse by the caller, never network input).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    /// A transaction with this key already exists.
    #[error("a transaction with this key already exists")]
    Exists,
    /// No live transaction has this key.
    #[error("no transaction with this key")]
    NotFound,
    /// A client key was used for a server operation or the other way round.
    #[error("key role does not match the operation")]
    WrongRole,
}

/// Whether `status` is a provisional response.
fn is_provisional(status: u16) -> bool {
    (100..200).contains(&status)
}

/// Whether `status` is a 2xx.
fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// Whether `status` is a final non-2xx response.
fn is_failure(status: u16) -> bool {
    (300..700).contains(&status)
}
