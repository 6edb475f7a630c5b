//! Stands in for `tch` in the fuzz build: error.rs only names `TchError`.

/// Never constructed by the parsers under test.
#[derive(Debug)]
pub struct TchError;

impl std::fmt::Display for TchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("torch error")
    }
}
