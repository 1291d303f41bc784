//! Filled in by the api table change.
