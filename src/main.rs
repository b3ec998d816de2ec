//! The `callgate` command line (spec/operations.md).

fn main() {
    let _ = callgate::config::model::License::default();
}
