//! The shard wing: where shards live and how they get there.
//!
//! Decisions and effects are kept apart:
//! - [`record`] (the durable records and the pure questions asked of them),
//!   [`placement`] (where shards should live) and [`plan`] (the one next [`plan::Step`]
//!   for one shard, from a snapshot) are pure and tested from tables;
//! - [`map`] is the live map: the committed record per shard behind the lock that
//!   orders data requests against changes, and the one way to change it (commit,
//!   push to the nodes, publish);
//! - [`reconciler`] is the executor: one task that owns its state, takes a snapshot per
//!   pass, asks [`plan`] for each shard and applies every step through
//!   [`commit::commit`], so each change is committed, logged, counted and traced the
//!   same way; [`copy`] and [`audit`] are the two effects that talk to nodes at length;
//! - [`balance`] decides, purely, which hot node sheds which shard (a role swap or
//!   a copy elsewhere); the reconciler turns its actions into placement wishes;
//! - [`inflight`] tracks client writes in flight per key, so reads never go back
//!   in time while a write is on some holders and not yet on others;
//! - [`moves`] holds the move records and the handle the rest of the coordinator uses
//!   to wake the reconciler or read what it is doing.
//!
//! **Architecture Invariant:** nothing outside this wing decides a shard change, and
//! health never imports it: node state changes reach the reconciler as events.

pub mod audit;
pub mod balance;
pub mod change;
pub mod commit;
pub mod copy;
pub mod inflight;
pub mod load_round;
pub mod map;
pub mod moves;
pub mod placement;
pub mod plan;
pub mod reconciler;
pub mod record;
pub mod stats;
pub mod versions;
