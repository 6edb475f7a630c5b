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

/// An error with a message meant for the person at the terminal, and the
/// typed failure underneath it (when there is one) as its
/// [`source`](std::error::Error::source): recovery code asks the cause
/// ([`Error::io_cause`], [`Error::kind`]), never the message text.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    #[source]
    pub cause: Option<Cause>,
}

/// The failure an [`Error`] wraps, kept with its own type.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// The operating system's error (its `ErrorKind` and OS code).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// An error tch returned.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// libtorch's own message, from the C++ shim (with its backtrace).
    #[error("{0}")]
    Libtorch(String),
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            cause: None,
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
    /// A file-system failure; `what` names the file and the action. The
    /// message is `what: err`; an [`std::io::Error`] is kept as the cause.
    pub fn io(what: impl fmt::Display, err: impl IoFailure) -> Self {
        let message = format!("{what}: {err}");
        Error {
            kind: ErrorKind::Io,
            message,
            cause: err.into_cause(),
        }
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
    /// Prefixes the message with context, keeping the kind and the cause.
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.message = format!("{ctx}: {}", self.message);
        self
    }
    /// Keeps `cause` under this error.
    pub fn with_cause(mut self, cause: impl Into<Cause>) -> Self {
        self.cause = Some(cause.into());
        self
    }
    /// The operating system's error underneath, if this is one.
    pub fn io_cause(&self) -> Option<&std::io::Error> {
        match &self.cause {
            Some(Cause::Io(e)) => Some(e),
            _ => None,
        }
    }
}

/// What [`Error::io`] accepts as the failure: an [`std::io::Error`] (kept
/// as the cause) or a description (text, or another library's error whose
/// text is all that matters to the user).
pub trait IoFailure: fmt::Display {
    fn into_cause(self) -> Option<Cause>;
}

impl IoFailure for std::io::Error {
    fn into_cause(self) -> Option<Cause> {
        Some(Cause::Io(self))
    }
}

impl IoFailure for &std::io::Error {
    fn into_cause(self) -> Option<Cause> {
        Some(Cause::Io(std::io::Error::new(
            self.kind(),
            self.to_string(),
        )))
    }
}

impl IoFailure for tch::TchError {
    fn into_cause(self) -> Option<Cause> {
        Some(Cause::Torch(self))
    }
}

macro_rules! described_failures {
    ($($t:ty),* $(,)?) => {
        $(impl IoFailure for $t {
            fn into_cause(self) -> Option<Cause> {
                None
            }
        })*
    };
}
described_failures!(&str, String, &String);

impl Error {
    /// A failure libtorch reported as `message` (through tch, or through the
    /// C++ shim), during `what`: an allocation that failed (its CPU
    /// allocator's "can't allocate memory", CUDA's "out of memory", a
    /// library's allocation status) is [`ErrorKind::OutOfMemory`] with
    /// libtorch's first line; anything else is internal.
    pub fn libtorch(what: impl fmt::Display, message: &str) -> Self {
        Self::from_libtorch(what, message, Cause::Libtorch(message.to_string()))
    }

    /// The one place libtorch's text is read: it has no typed out-of-memory
    /// error, so its message decides the kind, once, here.
    fn from_libtorch(what: impl fmt::Display, message: &str, cause: Cause) -> Self {
        let error = if is_out_of_memory(message) {
            let first = message.lines().next().unwrap_or_default().trim();
            Error::new(ErrorKind::OutOfMemory, format!("{what}: {first}"))
        } else {
            Error::internal(format!("{what}: {message}"))
        };
        error.with_cause(cause)
    }
}

impl From<tch::TchError> for Error {
    /// See [`Error::libtorch`].
    fn from(e: tch::TchError) -> Self {
        let text = match &e {
            tch::TchError::Torch(m) => m.clone(),
            other => other.to_string(),
        };
        Error::from_libtorch("libtorch", &text, Cause::Torch(e))
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
        assert!(matches!(e.cause, Some(Cause::Torch(_))));
    }

    #[test]
    fn io_errors_keep_their_os_cause_under_the_same_message() {
        use std::error::Error as _;
        let full = std::io::Error::from_raw_os_error(28);
        let e = Error::io("writing frame_00001.png", full).context("frame 1");
        assert_eq!(e.kind, ErrorKind::Io);
        assert_eq!(e.exit_code(), 4);
        assert_eq!(
            e.message,
            "frame 1: writing frame_00001.png: No space left on device (os error 28)"
        );
        let cause = e.io_cause().expect("the OS error is kept");
        assert_eq!(cause.kind(), std::io::ErrorKind::StorageFull);
        assert_eq!(cause.raw_os_error(), Some(28));
        let source = e.source().expect("the cause is the source");
        assert_eq!(source.to_string(), "No space left on device (os error 28)");
        let described = Error::io("writing x", "the path has no file name");
        assert!(described.io_cause().is_none() && described.source().is_none());
        assert_eq!(
            described.to_string(),
            "writing x: the path has no file name"
        );
    }

    #[test]
    fn libtorch_text_is_read_once_and_kept_whole_as_the_cause() {
        let text = "CUDA out of memory. Tried to allocate 2.00 GiB\nException raised from ...";
        let e = Error::libtorch("decoding", text);
        assert_eq!(e.kind, ErrorKind::OutOfMemory);
        assert_eq!(
            e.message,
            "decoding: CUDA out of memory. Tried to allocate 2.00 GiB"
        );
        assert!(matches!(&e.cause, Some(Cause::Libtorch(t)) if t == text));
    }
}
