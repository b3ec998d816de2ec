//! The human-readable form of an [`Explanation`]: one labelled line per step, the counters as
//! one aligned table, the verdict last.

use std::fmt;

use super::{CounterLine, Destination, Explanation, Identification, RouteView, StepOutcome};

/// Width of the left-hand labels (`caller`, `route`, ...).
const LABEL: usize = 9;

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts = if self.counts_from == "file" {
            "used 0: from the file alone".to_owned()
        } else {
            format!("used: live from {}", self.counts_from)
        };
        line(
            f,
            "call",
            &format!("from {} to {} ({counts})", self.source, self.number),
        )?;
        line(f, "caller", &caller(&self.caller))?;
        if let Some(r) = &self.route {
            line(f, "route", &route(r))?;
        }
        self.fmt_path(f)?;
        for (i, why) in self.skipped.iter().enumerate() {
            let label = if i == 0 { "skipped" } else { "" };
            line(f, label, why)?;
        }
        self.fmt_verdict(f)
    }
}

impl Explanation {
    fn fmt_path(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all: Vec<&CounterLine> = self.path.iter().flat_map(|s| &s.counters).collect();
        let widths = Widths::of(&all);
        for (i, step) in self.path.iter().enumerate() {
            let label = if i == 0 { "path" } else { "" };
            let legs = if step.legs.is_empty() {
                String::new()
            } else {
                format!(" ({})", step.legs.join(", "))
            };
            let outcome = match &step.outcome {
                StepOutcome::Admitted => "admitted".to_owned(),
                StepOutcome::Refused { by } => format!("refused by {by}"),
                StepOutcome::NotTried => "not tried (an earlier way has room)".to_owned(),
            };
            line(f, label, &format!("{}{legs}: {outcome}", step.role))?;
            for c in &step.counters {
                widths.row(f, c)?;
            }
        }
        Ok(())
    }

    fn fmt_verdict(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = &self.verdict;
        match (v.admitted, v.status) {
            (true, _) => line(
                f,
                "verdict",
                &format!("admitted: rings {}", v.rings.join("; ")),
            )?,
            (false, Some(status)) => {
                let phrase = v.phrase.as_deref().unwrap_or_default();
                line(f, "verdict", &format!("refused: {status} {phrase}"))?;
            }
            (false, None) => line(f, "verdict", "refused")?,
        }
        if let Some(r) = &v.reason_header {
            line(f, "", &format!("Reason: {r}"))?;
        }
        if let Some(w) = &v.warning_header {
            line(f, "", &format!("Warning: {w}"))?;
        }
        line(f, "because", &v.reason)
    }
}

fn line(f: &mut fmt::Formatter<'_>, label: &str, text: &str) -> fmt::Result {
    writeln!(f, "{label:<LABEL$}{text}")
}

fn caller(id: &Identification) -> String {
    match id {
        Identification::Extension {
            extension,
            pbx,
            matched,
        } => format!("extension {extension} (PBX at {pbx}, matched by {matched})"),
        Identification::Trunk { trunk, matched } => {
            format!("trunk {trunk} (matched by {matched})")
        }
        Identification::Authenticated { extension } => {
            format!("extension {extension} (taken as authenticated: --as)")
        }
        Identification::MustAuthenticate { extensions } => {
            format!("must authenticate as one of {}", extensions.join(", "))
        }
        Identification::Unknown { .. } => "unknown source".to_owned(),
    }
}

fn route(r: &RouteView) -> String {
    match r {
        RouteView::Internal { callee } => format!("internal to extension {callee}"),
        RouteView::Outbound {
            pattern,
            rule,
            strip,
            prepend,
            number,
            trunks,
        } => format!(
            "outbound by rule {rule} /{pattern}/ (strip {strip}, prepend {prepend:?}): sends \
             {number} to {}",
            trunks.join(", then ")
        ),
        RouteView::Inbound {
            trunk,
            dids,
            destination,
        } => format!(
            "inbound on trunk {trunk}, rule DIDs {dids} -> {}",
            destination_text(destination)
        ),
        RouteView::None => "none".to_owned(),
    }
}

fn destination_text(d: &Destination) -> String {
    match d {
        Destination::Extension { extension } => format!("extension {extension}"),
        Destination::RingRule {
            name,
            targets,
            ring_time_secs,
        } => format!(
            "ring rule {name}: {} for {ring_time_secs}s",
            targets.join(", ")
        ),
    }
}

/// Column widths of the counter table, shared by every step so the columns line up.
struct Widths {
    level: usize,
    name: usize,
    counter: usize,
}

impl Widths {
    fn of(lines: &[&CounterLine]) -> Widths {
        let max = |f: fn(&CounterLine) -> usize| lines.iter().map(|c| f(c)).max().unwrap_or(0);
        Widths {
            level: max(|c| c.level.len()),
            name: max(|c| c.name.chars().count()),
            counter: max(|c| c.counter.len()),
        }
    }

    fn row(&self, f: &mut fmt::Formatter<'_>, c: &CounterLine) -> fmt::Result {
        let limit = c.limit.map_or("unlimited".to_owned(), |l| l.to_string());
        let full = if c.full { "  FULL" } else { "" };
        let (lw, nw, cw) = (self.level, self.name, self.counter);
        writeln!(
            f,
            "{:LABEL$}  {:<lw$}  {:<nw$}  {:<cw$}  {}/{limit}{full}",
            "", c.level, c.name, c.counter, c.used
        )
    }
}
