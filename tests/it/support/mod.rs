//! Helpers shared by the integration tests' modules (one copy each; they
//! used to be copied between the test files).

#[cfg(feature = "video")]
pub mod grid;

use std::path::{Path, PathBuf};
#[cfg(feature = "video")]
use std::process::Command;
use std::process::Output;
#[cfg(feature = "video")]
use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};

/// The untrained tiny models (`zoetrope weights tiny`), generated once per
/// test process into a temporary folder of its own.
#[cfg(feature = "video")]
pub fn tiny_weights() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("zoetrope-tiny-weights-{}", std::process::id()));
        zoetrope::models::tiny::write_tiny_models(&dir).expect("tiny models");
        dir
    })
}

/// `zoetrope ARGS` with the tiny models and one libtorch thread (the same
/// arithmetic whatever else the machine runs).
#[cfg(feature = "video")]
pub fn tiny_command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zoetrope"));
    c.args(args)
        .env("ZOETROPE_WEIGHTS", tiny_weights())
        .env("OMP_NUM_THREADS", "1");
    c
}

/// [`tiny_command`], run to its end.
#[cfg(feature = "video")]
pub fn run_tiny(args: &[&str]) -> Output {
    tiny_command(args).output().unwrap()
}

/// `zoetrope render SCENE --out OUT -q` on the tiny models, which must
/// succeed (the message is its stderr).
#[cfg(feature = "video")]
pub fn render_ok(scene: &Path, out: &Path) {
    let o = run_tiny(&[
        "render",
        scene.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert!(
        o.status.success(),
        "render {}: {}",
        scene.display(),
        stderr(&o)
    );
}

/// Polls until `ready()` holds or `child` has exited, then kills it
/// (SIGKILL: no clean-up) and reaps it; fails naming `what` after five
/// minutes.
#[cfg(feature = "video")]
pub fn kill_when(mut child: std::process::Child, what: &str, ready: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(300),
            "the render never reached {what}"
        );
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Whether a render folder holds frame `k`'s PNG and a state.json.
#[cfg(feature = "video")]
pub fn has_frame(dir: &Path, k: usize) -> bool {
    dir.join(format!("frame_{k:05}.png")).exists() && dir.join("state.json").exists()
}

/// The bytes of a render's first `n` frames, `frame_00001.png` on.
#[cfg(feature = "video")]
pub fn frames_of(dir: &Path, n: usize) -> Vec<Vec<u8>> {
    (1..=n)
        .map(|k| std::fs::read(dir.join(format!("frame_{k:05}.png"))).unwrap())
        .collect()
}

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
