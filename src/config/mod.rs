//! Configuration: the TOML schema (spec/config.md), its validation and the resolved [`Snapshot`].

pub mod model;

pub use model::Snapshot;
