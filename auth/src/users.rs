//! `portcullis users ...`: edits the credential store file. (stub: being written)
