//! The test clock's origin, outside the sans-IO cores (which never read the clock): std offers no
//! way to make an `Instant` but `Instant::now()`, so tests read it once here and express every
//! later instant as `origin + duration`. Test-only.

use std::time::Instant;

/// A fixed starting point for a test's fake clock.
pub(crate) fn origin() -> Instant {
    Instant::now()
}
