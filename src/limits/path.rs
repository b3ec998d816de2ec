//! Which counters a call or a forking leg occupies (spec call-control 3 and 4).
//!
//! A [`PathSpec`] says what the call is in entity ids; [`Generation::path`] turns it into a
//! [`Path`], a small fixed array of [`CounterId`]s (at most [`Path::CAPACITY`]), so admitting
//! allocates nothing.
//!
//! **Decision (public forking leg)**: spec 4 says a public target leg acquires `public` "on the
//! rule owner's chain". A ring rule belongs to an organization, but E3 requires the public leg of
//! extension 002's rule to be refused by 002's *user* (`public = 1`, held by the incoming call).
//! So the owner is given as a [`RuleOwner`]: the user of the extension whose call is forked when
//! there is one (E3), or the organization when an inbound rule points at the ring rule directly.
//! The chain is then that level and everything above it (`public`), plus the trunk (`max_calls`,
//! `max_outbound`). No extension counter is taken: the leg is placed by the rule, and the forked
//! extension is already counted by the incoming call.

use crate::config::model::{ExtId, OrgId, TrunkId, UserId};

use super::tree::{CounterId, Generation, Layout, Scope};

/// A call or forking leg, in entity ids of the generation's [`Generation::config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathSpec {
    /// Local extension -> local extension (11 counters; `internal` on both chains).
    LocalToLocal {
        /// Calling extension.
        caller: ExtId,
        /// Called extension.
        callee: ExtId,
    },
    /// Local extension -> public number through `trunk` (8 counters).
    LocalToPublic {
        /// Calling extension.
        caller: ExtId,
        /// Trunk chosen by the outbound rule.
        trunk: TrunkId,
    },
    /// Public number on `trunk` -> local extension (7 counters).
    PublicToLocal {
        /// Trunk the call arrived on.
        trunk: TrunkId,
        /// Called extension.
        callee: ExtId,
    },
    /// Public number on `trunk` -> a ring rule of organization `organization` that no extension
    /// owns (5 counters: the trunk's, `public` from the organization up).
    PublicToOrganization {
        /// Trunk the call arrived on.
        trunk: TrunkId,
        /// The ring rule's organization.
        organization: OrgId,
    },
    /// A forking leg to a local extension (5 counters: its `max_calls`, `internal` on its chain).
    ForkLocalLeg {
        /// Target extension.
        target: ExtId,
    },
    /// A forking leg to a public number (see the module doc for the owner decision).
    ForkPublicLeg {
        /// Whose `public` chain the leg occupies.
        owner: RuleOwner,
        /// Trunk chosen for the public number.
        trunk: TrunkId,
    },
}

/// The level a public forking leg is counted from (itself and every level above it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleOwner {
    /// The user of the extension whose call is forked.
    User(UserId),
    /// The organization owning the ring rule (when no extension is involved).
    Organization(OrgId),
}

/// The counters a call occupies, one unit each, in acquisition order. Only meaningful in the
/// [`Generation`] that built it. A counter may appear twice (a shared ancestor of both ends of a
/// local call counts once per end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path {
    ids: [CounterId; Path::CAPACITY],
    len: u8,
}

impl Path {
    /// The longest path: local -> local.
    pub const CAPACITY: usize = 11;

    fn new() -> Self {
        Path {
            ids: [CounterId::default(); Path::CAPACITY],
            len: 0,
        }
    }

    fn push(&mut self, id: CounterId) {
        self.ids[usize::from(self.len)] = id;
        self.len += 1;
    }

    /// The counters, in acquisition order.
    pub fn ids(&self) -> &[CounterId] {
        &self.ids[..usize::from(self.len)]
    }

    /// `scope` on the user's, organization's, service provider's and server's counters.
    fn push_chain(&mut self, g: &Generation, start: RuleOwner, scope: Scope) {
        let l: &Layout = g.layout();
        let orgs = &g.config().organizations;
        let org = match start {
            RuleOwner::User(user) => {
                self.push(l.user(user, scope));
                g.config().users[user.index()].organization
            }
            RuleOwner::Organization(org) => org,
        };
        self.push(l.organization(org, scope));
        self.push(l.service_provider(orgs[org.index()].service_provider, scope));
        self.push(l.server(scope));
    }

    fn push_ext_chain(&mut self, g: &Generation, ext: ExtId, scope: Scope) {
        let user = g.config().extensions[ext.index()].user;
        self.push_chain(g, RuleOwner::User(user), scope);
    }
}

impl Generation {
    /// The counters `spec` occupies in this generation (spec call-control 3 table, and 4).
    ///
    /// # Panics
    /// If an id is out of range: ids must come from [`Generation::config`].
    pub fn path(&self, spec: PathSpec) -> Path {
        let l = *self.layout();
        let mut p = Path::new();
        match spec {
            PathSpec::LocalToLocal { caller, callee } => {
                p.push(l.ext_max_calls(caller));
                p.push(l.ext_max_outgoing(caller));
                p.push_ext_chain(self, caller, Scope::Internal);
                p.push_ext_chain(self, callee, Scope::Internal);
                p.push(l.ext_max_calls(callee));
            }
            PathSpec::LocalToPublic { caller, trunk } => {
                p.push(l.ext_max_calls(caller));
                p.push(l.ext_max_outgoing(caller));
                p.push_ext_chain(self, caller, Scope::Public);
                p.push(l.trunk_max_calls(trunk));
                p.push(l.trunk_max_outbound(trunk));
            }
            PathSpec::PublicToLocal { trunk, callee } => {
                p.push(l.trunk_max_calls(trunk));
                p.push(l.trunk_max_inbound(trunk));
                p.push_ext_chain(self, callee, Scope::Public);
                p.push(l.ext_max_calls(callee));
            }
            PathSpec::PublicToOrganization {
                trunk,
                organization,
            } => {
                p.push(l.trunk_max_calls(trunk));
                p.push(l.trunk_max_inbound(trunk));
                p.push_chain(self, RuleOwner::Organization(organization), Scope::Public);
            }
            PathSpec::ForkLocalLeg { target } => {
                p.push(l.ext_max_calls(target));
                p.push_ext_chain(self, target, Scope::Internal);
            }
            PathSpec::ForkPublicLeg { owner, trunk } => {
                p.push_chain(self, owner, Scope::Public);
                p.push(l.trunk_max_calls(trunk));
                p.push(l.trunk_max_outbound(trunk));
            }
        }
        p
    }
}
