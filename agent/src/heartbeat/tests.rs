//! Tests of the heartbeat sender.
