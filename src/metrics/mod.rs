//! Prometheus metrics, registered once, with closed label sets (the families
//! and their label enums are in `registry.rs`).

mod registry;

pub use registry::{
    AuthReason, Decision, Endpoint, FailOpen, FinalizeResult, Limit, Metrics, ReconcileResult, ReloadRefusal,
    ReloadResult, SessionReason, StateOp,
};
