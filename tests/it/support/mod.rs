//! Helpers shared by the integration tests' modules (one copy each; they
//! used to be copied between the test files).

#[cfg(feature = "video")]
pub mod grid;

use std::path::{Path, PathBuf};
use std::process::Output;
use tch::{Device, Kind, Tensor};

/// `tests/fixtures/weights/<name>`.
pub fn weights_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/weights")
        .join(name)
}

/// A finished command's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes a scene file `dir/name` and returns its path.
pub fn write_scene(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The largest absolute element-wise difference.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// Float on the CPU.
pub fn opts() -> (Kind, Device) {
    (Kind::Float, Device::Cpu)
}
