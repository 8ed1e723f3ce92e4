//! End-to-end tests over the real binaries. One test binary for all of them, since
//! every integration-test file links its own (slow on 2 cores).

mod assets;
mod balance;
mod beat;
mod chaos;
mod cli;
mod clock;
mod failures;
mod gray;
mod ha;
mod heartbeats;
mod hostile;
mod jepsen;
mod load;
mod node_auth;
mod prometheus;
mod restart;
mod security;
mod shards;
mod telemetry;
mod tls;
mod tokens;
mod traces;
mod ui;
