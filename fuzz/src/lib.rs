//! The parsers under test, compiled from the main crate's sources without
//! libtorch (see Cargo.toml).

#[path = "../../src/catalog.rs"]
pub mod catalog;
#[path = "../../src/error.rs"]
pub mod error;
#[path = "../../src/scene/mod.rs"]
pub mod scene;
#[path = "../../src/schedule/mod.rs"]
pub mod schedule;

pub use error::{Error, ErrorKind, Result};
