//! End-to-end tests over the real binaries. One test binary for all of them, since
//! every integration-test file links its own (slow on 2 cores).

mod assets;
mod chaos;
mod cli;
mod failures;
mod heartbeats;
mod hostile;
mod prometheus;
mod restart;
mod shards;
mod telemetry;
mod tls;
mod traces;
