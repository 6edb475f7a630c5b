//! User-facing errors.
//!
//! Every failure a user can cause (a bad scene file, a missing weights file, an
//! unwritable folder) is an [`Error`] whose message names the file, setting,
//! line or model and says what to do. The CLI prints it and exits with
//! [`Error::exit_code`]; nothing a user does should end in a panic.

use std::fmt;

/// What kind of failure this is; decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input from the user (scene file, arguments, images): exit code 2.
    Input,
    /// A model or weights file is missing or unusable: exit code 3.
    Weights,
    /// Reading or writing files failed: exit code 4.
    Io,
    /// The run was interrupted (Ctrl-C): exit code 130.
    Interrupted,
    /// Memory ran out (the CPU's or a GPU's): exit code 5.
    OutOfMemory,
    /// Anything else (a bug, a torch failure): exit code 1.
    Internal,
}

/// An error with a message meant for the person at the terminal.
#[derive(Debug)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }
    /// Bad user input (exit code 2).
    pub fn input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Input, message)
    }
    /// Missing or broken model weights (exit code 3).
    pub fn weights(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Weights, message)
    }
    /// A file-system failure; `what` names the file and the action.
    pub fn io(what: impl fmt::Display, err: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Io, format!("{what}: {err}"))
    }
    /// Internal failure that is not the user's fault (exit code 1).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    /// The process exit code the CLI uses for this error.
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            ErrorKind::Input => 2,
            ErrorKind::Weights => 3,
            ErrorKind::Io => 4,
            ErrorKind::Interrupted => 130,
            ErrorKind::OutOfMemory => 5,
            ErrorKind::Internal => 1,
        }
    }
    /// Prefixes the message with context, keeping the kind.
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.message = format!("{ctx}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl Error {
    /// A failure libtorch reported as `message` (through tch, or through the
    /// C++ shim), during `what`: an allocation that failed (its CPU
    /// allocator's "can't allocate memory", CUDA's "out of memory", a
    /// library's allocation status) is [`ErrorKind::OutOfMemory`] with
    /// libtorch's first line; anything else is internal.
    pub fn libtorch(what: impl fmt::Display, message: &str) -> Self {
        if is_out_of_memory(message) {
            let first = message.lines().next().unwrap_or_default().trim();
            return Error::new(ErrorKind::OutOfMemory, format!("{what}: {first}"));
        }
        Error::internal(format!("{what}: {message}"))
    }
}

impl From<tch::TchError> for Error {
    /// See [`Error::libtorch`].
    fn from(e: tch::TchError) -> Self {
        let text = match e {
            tch::TchError::Torch(m) => m,
            other => other.to_string(),
        };
        Error::libtorch("libtorch", &text)
    }
}

/// Whether a libtorch message reports an allocation that failed.
fn is_out_of_memory(message: &str) -> bool {
    const SIGNS: [&str; 6] = [
        "out of memory",
        "can't allocate memory",
        "not enough memory",
        "std::bad_alloc",
        "ALLOC_FAILED",
        "CUDNN_STATUS_NOT_ENOUGH_WORKSPACE",
    ];
    SIGNS.iter().any(|s| message.contains(s))
}

/// The crate-wide result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_failures_are_out_of_memory() {
        for text in [
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried to allocate 68719476736 bytes. Error code 12 (Cannot allocate memory)",
            "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.10 GiB total capacity)",
            "cuBLAS error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
        ] {
            let e = Error::from(tch::TchError::Torch(format!("{text}\nException raised from ...")));
            assert_eq!(e.kind, ErrorKind::OutOfMemory, "{text}");
            assert_eq!(e.exit_code(), 5);
            assert_eq!(e.message, format!("libtorch: {text}"));
        }
        let e = Error::from(tch::TchError::Torch("shape mismatch".into()));
        assert_eq!(e.kind, ErrorKind::Internal);
    }
}
