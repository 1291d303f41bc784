//! Tests of the record-batch codec: unit cases, property tests against an independent
//! reference encoder, the old Produce header check as an oracle, and golden batches from
//! real clients.

mod golden;
mod legacy_check;
mod properties;
mod reference;
mod unit;
