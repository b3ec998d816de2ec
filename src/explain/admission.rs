//! The admission of a plan decided over numbers: the same order and all-or-nothing rule as
//! `b2bua::setup::admit` on the limiter (the call's own units, then each target on the first of
//! its ways with room), but nothing is acquired: units taken by earlier steps of the same call are
//! tallied here, so a second leg on a shared counter sees the first one's unit (spec E3).

use std::collections::HashMap;

use serde::Serialize;

use super::{extension_name, trunk_name, UsedLookup, Verdict};
use crate::config::model::Snapshot;
use crate::limits::{CounterId, Generation, PathSpec, Refusal};
use crate::routing::plan::{Choice, Plan};

/// One set of counters the call acquires at once: its own, or one way to reach a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// `call` for the call's own units, else the target and the way (`target 1: ... via trunk`).
    pub role: String,
    /// Where its INVITEs would go (`udp 127.0.0.1:5090`); empty for the call's own units.
    pub legs: Vec<String>,
    /// Its counters, in acquisition order.
    pub counters: Vec<CounterLine>,
    /// What admission does with it.
    pub outcome: StepOutcome,
}

/// One counter of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CounterLine {
    /// `server`, `service_provider`, `organization`, `user`, `extension` or `trunk`.
    pub level: String,
    /// Entity name (`number@organization` for an extension).
    pub name: String,
    /// `public`, `internal`, `max_calls`, `max_outgoing`, `max_inbound` or `max_outbound`.
    pub counter: String,
    /// Units in use when the step would take its unit (including this call's earlier steps).
    pub used: u32,
    /// The limit; `None` is unlimited.
    pub limit: Option<u32>,
    /// True when `used` has reached `limit`: this counter refuses.
    pub full: bool,
}

/// What admission does with a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepOutcome {
    /// Its units are taken (or it needs none beyond the call's own).
    Admitted,
    /// A counter is full: the step takes nothing.
    Refused {
        /// The refusing counter, `level name: counter used/limit`.
        by: String,
    },
    /// Not needed: an earlier way to the same target was admitted (a failover alternative).
    NotTried,
}

/// Units in use as the limiter would see them: the lookup plus what this call took so far.
struct Tally<'a> {
    g: &'a Generation,
    used: &'a UsedLookup<'a>,
    taken: HashMap<CounterId, u32>,
    /// Tokens this call's earlier steps took, per `cps` bucket (level, entity).
    tokens: HashMap<(crate::limits::Level, String), u32>,
}

impl Tally<'_> {
    /// The counters of `spec` with their numbers; the first full one refuses (all or nothing).
    /// Takes the units when `commit` and nothing refuses.
    fn try_path(&mut self, spec: PathSpec, commit: bool) -> (Vec<CounterLine>, Option<Refusal>) {
        let path = self.g.path(spec);
        let mut pending: HashMap<CounterId, u32> = HashMap::new();
        let mut refusal = None;
        let mut lines = Vec::with_capacity(path.ids().len());
        for &id in path.ids() {
            let (level, name, kind) = self.g.describe(id);
            let earlier = self.taken.get(&id).copied().unwrap_or(0);
            let here = pending.entry(id).or_insert(0);
            let used = (self.used)(level, &name, kind)
                .saturating_add(earlier)
                .saturating_add(*here);
            *here += 1;
            let limit = self.g.cell(id).limit();
            let full = limit.is_some_and(|l| used >= l);
            if let (true, None, Some(limit)) = (full, &refusal, limit) {
                refusal = Some(Refusal {
                    level,
                    name: name.clone(),
                    counter: kind,
                    used,
                    limit,
                });
            }
            lines.push(CounterLine {
                level: level.as_str().to_owned(),
                name,
                counter: kind.as_str().to_owned(),
                used,
                limit,
                full,
            });
        }
        // The calls-per-second buckets the admission charges with the units (all or nothing).
        let rates = self.g.rates.describe_path(self.g.config(), spec);
        for (level, name, limit) in &rates {
            let kind = crate::limits::CounterKind::Cps;
            let earlier = self
                .tokens
                .get(&(*level, name.clone()))
                .copied()
                .unwrap_or(0);
            let used = (self.used)(*level, name, kind).saturating_add(earlier);
            let full = limit.is_some_and(|l| used >= l);
            if let (true, None, Some(limit)) = (full, &refusal, *limit) {
                refusal = Some(Refusal {
                    level: *level,
                    name: name.clone(),
                    counter: kind,
                    used,
                    limit,
                });
            }
            lines.push(CounterLine {
                level: level.as_str().to_owned(),
                name: name.clone(),
                counter: kind.as_str().to_owned(),
                used,
                limit: *limit,
                full,
            });
        }
        if commit && refusal.is_none() {
            for (id, n) in pending {
                *self.taken.entry(id).or_insert(0) += n;
            }
            for (level, name, _) in rates {
                *self.tokens.entry((level, name)).or_insert(0) += 1;
            }
        }
        (lines, refusal)
    }
}

/// The steps of `plan` and the verdict, as `b2bua::setup::admit` would decide them.
pub(super) fn decide(g: &Generation, plan: &Plan, used: &UsedLookup<'_>) -> (Vec<Step>, Verdict) {
    let s: &Snapshot = g.config();
    let mut tally = Tally {
        g,
        used,
        taken: HashMap::new(),
        tokens: HashMap::new(),
    };
    let mut steps = Vec::new();
    if let Some(spec) = plan.incoming {
        let (counters, refusal) = tally.try_path(spec, true);
        steps.push(step("call".to_owned(), Vec::new(), counters, &refusal));
        if let Some(r) = refusal {
            return (steps, refused_by(s, &r, "the call's own counters are full"));
        }
    }
    let mut rings = Vec::new();
    let mut last = None;
    for (n, target) in plan.targets.iter().enumerate() {
        let mut admitted = false;
        for choice in &target.choices {
            let label = format!("target {}: {}", n + 1, choice_label(s, plan, choice));
            let legs = choice.legs.iter().map(|l| leg_dest(&l.dest)).collect();
            let Some(spec) = choice.spec else {
                // Covered by the call's own units (a single callee).
                steps.push(step(label.clone(), legs, Vec::new(), &None));
                rings.push(label);
                break;
            };
            let (counters, refusal) = tally.try_path(spec, !admitted);
            let mut st = step(label.clone(), legs, counters, &refusal);
            if admitted {
                st.outcome = StepOutcome::NotTried;
            } else if let Some(r) = refusal {
                last = Some(r);
            } else {
                rings.push(label);
                admitted = true;
            }
            steps.push(st);
        }
    }
    if rings.is_empty() {
        let verdict = match last {
            Some(r) => refused_by(s, &r, "no target could start"),
            None => Verdict::refused(480, "no target to ring".to_owned()),
        };
        return (steps, verdict);
    }
    let verdict = Verdict {
        admitted: true,
        status: None,
        phrase: None,
        reason_header: None,
        warning_header: None,
        reason: "every counter on the path is below its limit".to_owned(),
        rings,
    };
    (steps, verdict)
}

fn step(
    role: String,
    legs: Vec<String>,
    counters: Vec<CounterLine>,
    refusal: &Option<Refusal>,
) -> Step {
    let outcome = match refusal {
        Some(r) => StepOutcome::Refused { by: r.to_string() },
        None => StepOutcome::Admitted,
    };
    Step {
        role,
        legs,
        counters,
        outcome,
    }
}

/// What a way reaches, in names: an extension, or a number through a trunk.
fn choice_label(s: &Snapshot, plan: &Plan, choice: &Choice) -> String {
    let user = choice.legs.first().map_or("", |l| l.user.as_str());
    match (choice.spec, choice.trunk, plan.incoming) {
        (_, Some(t), _) => format!("{user} via trunk {}", trunk_name(s, t)),
        (Some(PathSpec::ForkLocalLeg { target }), _, _) => {
            format!("extension {}", extension_name(s, target))
        }
        (
            None,
            _,
            Some(PathSpec::LocalToLocal { callee, .. } | PathSpec::PublicToLocal { callee, .. }),
        ) => format!("extension {}", extension_name(s, callee)),
        _ => user.to_owned(),
    }
}

/// The verdict of a full counter: `[server] reject_code` with the `Reason`/`Warning` the b2bua
/// writes (`b2bua::setup::refuse_admission`).
fn refused_by(s: &Snapshot, r: &Refusal, context: &str) -> Verdict {
    let status = s.server.reject_code;
    let text = r.to_string().replace('"', "'");
    let mut v = Verdict::refused(
        status,
        format!(
            "{context}: {} {} {} is at its limit ({}/{})",
            r.level, r.name, r.counter, r.used, r.limit
        ),
    );
    v.reason_header = Some(format!("SIP;cause={status};text=\"{text}\""));
    v.warning_header = Some(format!("399 callgate \"{text}\""));
    v
}

fn leg_dest(d: &crate::b2bua::Dest) -> String {
    format!("{} {}", d.transport.as_str(), d.addr)
}
