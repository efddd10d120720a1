//! The shared-memory channel between the Gatehouse planes.
//!
//! One single-producer/single-consumer ring pair per data-plane core:
//! requests flow core -> control plane, answers control plane -> core, in
//! one shared mapping with eventfd doorbells and versioned messages.
//!
//! Not written yet: this crate only holds its place in the dependency chain
//! `wire <- channel <- engine <- controlplane` (see docs/ARCHITECTURE.md).
