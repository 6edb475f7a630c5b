//! Stands in for `tch` in the fuzz build: error.rs only names `TchError`.

/// Never constructed by the parsers under test; the variant error.rs reads
/// and one other, as tch has several.
#[derive(Debug)]
pub enum TchError {
    Torch(String),
    Other(String),
}

impl std::fmt::Display for TchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TchError::Torch(m) | TchError::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for TchError {}
