//! Stands in for `tch` in the fuzz build: error.rs only names `TchError`.

/// Never constructed by the parsers under test; the variant error.rs reads.
#[derive(Debug)]
pub enum TchError {
    Torch(String),
}

impl std::fmt::Display for TchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TchError::Torch(m) => f.write_str(m),
        }
    }
}
