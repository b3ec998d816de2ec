//! sip (being written).
