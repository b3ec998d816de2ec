//! transaction (being written).
