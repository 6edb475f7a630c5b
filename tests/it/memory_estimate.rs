//! The memory estimate through the binary: `plan` prints it (table header
//! and JSON), a tiny render's measured peak resident set size is within
//! 25 % of it, and `plan` and `render` warn before loading models when it
//! exceeds the machine.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::support::{stderr, write_scene};
use serde_json::Value;

fn zoetrope(args: &[&str], weights: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zoetrope"));
    c.args(args).env("ZOETROPE_WEIGHTS", weights);
    c
}

fn plan_json(scene: &Path, weights: &Path) -> Value {
    let o = zoetrope(
        &["plan", scene.to_str().unwrap(), "--format", "json"],
        weights,
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "plan failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("one JSON object")
}

/// One frame of two steps with the tiny models, small enough for seconds
/// on a 2-core machine.
const TINY: &str = r#"
scenes = "a lighthouse on a rocky coast | blurry:-0.5:-0.9"
perceptors = ["tiny-clip"]
vqgan_model = "tiny-vqgan"
width = 128
height = 64
steps_per_scene = 2
steps_per_frame = 2
cutouts = 16
cut_pow = 1
seed = 3
device = "cpu"
"#;

/// Runs `cmd` to its end and returns its output and its peak resident set
/// size in MiB (the kernel's `ru_maxrss` of that child alone, from `wait4`).
// `wait4` reaps the child, which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn run_measured(mut cmd: Command) -> (Output, f64) {
    use std::io::Read;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    // Small outputs: read them to the end, then reap the child.
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_end(&mut err).unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child (not yet reaped: `Child::wait` is
    // never called) with valid out-pointers.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4");
    use std::os::unix::process::ExitStatusExt;
    let output = Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: out,
        stderr: err,
    };
    // Linux reports ru_maxrss in KiB.
    (output, usage.ru_maxrss as f64 / 1024.0)
}

/// The estimate `plan` prints for the tiny render is within 25 % of the
/// render's measured peak resident set size (BENCHMARKS.md, "Memory
/// estimate", has the real-size configurations).
#[test]
fn tiny_render_peak_is_within_a_quarter_of_the_estimate() {
    let t = tempfile::tempdir().unwrap();
    let weights = t.path().join("weights");
    zoetrope::models::tiny::write_tiny_models(&weights).unwrap();
    let scene = write_scene(t.path(), "tiny.toml", TINY);
    let doc = plan_json(&scene, &weights);
    let estimate = doc["memory_estimate_mib"]["cpu"].as_f64().unwrap();
    let out = t.path().join("out");
    let (o, peak) = run_measured(zoetrope(
        &[
            "render",
            scene.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ],
        &weights,
    ));
    assert!(o.status.success(), "render failed: {}", stderr(&o));
    assert!(out.join("tiny").join("frame_00001.png").is_file());
    eprintln!("tiny render: estimate {estimate:.0} MiB, measured peak {peak:.0} MiB");
    let err = (estimate - peak) / peak;
    assert!(
        err.abs() < 0.25,
        "estimate {estimate:.0} MiB, measured peak {peak:.0} MiB ({:+.1} %)",
        100.0 * err
    );
}

/// `plan --format json` has `memory_estimate_mib` with a CPU and a CUDA
/// figure and the details; the table's header shows it; a model whose
/// architecture needs its absent file makes it unknown, not an error.
#[test]
fn plan_prints_the_estimate() {
    let t = tempfile::tempdir().unwrap();
    let scene = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenes/spring_to_winter.toml");
    let doc = plan_json(&scene, t.path());
    let mib = &doc["memory_estimate_mib"];
    let (cpu, cuda) = (mib["cpu"].as_f64().unwrap(), mib["cuda"].as_f64().unwrap());
    // ViT-B/32 and imagenet at 256 × 128 with 60 cutouts: bench's
    // configuration a (2.9 GiB on the CPU), plus pytti's cutout augmentations,
    // on by default (about 1 GiB of float32 tensors; BENCHMARKS.md).
    assert!((3500.0..5000.0).contains(&cpu), "{cpu}");
    assert!((1800.0..2500.0).contains(&cuda), "{cuda}");
    let details = &doc["memory_estimate"];
    assert_eq!(details["cpu"]["precision"], "fp32");
    assert_eq!(details["cuda"]["precision"], "bf16");
    assert_eq!(details["cuda"]["mib"].as_f64().unwrap(), cuda);
    let parts = details["cuda"]["parts_mib"].as_array().unwrap();
    let sum: f64 = parts.iter().map(|p| p["mib"].as_f64().unwrap()).sum();
    assert!((sum - cuda).abs() < 1.0, "{sum} against {cuda}");

    let o = zoetrope(&["plan", scene.to_str().unwrap()], t.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    let line = table
        .lines()
        .take(3)
        .find(|l| l.starts_with("memory estimate: "))
        .unwrap_or_else(|| panic!("no estimate in the header:\n{table}"));
    assert!(
        line.contains("GiB on the CPU (fp32") && line.contains("on CUDA (bf16"),
        "{line}"
    );

    // An absent .safetensors perceptor: unknown.
    let unknown = write_scene(
        t.path(),
        "unknown.toml",
        "scenes = \"a lighthouse\"\nperceptors = [\"missing.safetensors\"]\n",
    );
    let doc = plan_json(&unknown, t.path());
    assert_eq!(doc["memory_estimate_mib"]["cpu"], Value::Null);
    assert_eq!(doc["memory_estimate_mib"]["cuda"], Value::Null);
    let reason = doc["memory_estimate"]["unknown"].as_str().unwrap();
    assert!(reason.contains("missing.safetensors"), "{reason}");
}

/// A scene far beyond any machine: `plan` warns (and still plans), and
/// `render` warns before loading models (here it then stops on the
/// missing weights, so nothing is allocated). Only the CPU can be checked
/// on a machine without a GPU.
#[test]
fn plan_and_render_warn_when_the_estimate_exceeds_the_machine() {
    let t = tempfile::tempdir().unwrap();
    let scene = write_scene(
        t.path(),
        "huge.toml",
        "scenes = \"a mural\"\nwidth = 8192\nheight = 8192\ncutouts = 256\n\
         perceptors = [\"ViT-B/32\"]\ndevice = \"cpu\"\n",
    );
    let o = zoetrope(&["plan", scene.to_str().unwrap()], t.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    for needle in [
        "warning: this render needs about ",
        "GiB of memory on the CPU (fp32) at its peak, but this machine has ",
        " available (",
        "decoder activations",
        "a smaller width × height (8192 × 8192 now)",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    let o = zoetrope(
        &[
            "render",
            scene.to_str().unwrap(),
            "--out",
            t.path().join("out").to_str().unwrap(),
        ],
        t.path(),
    )
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    let warned = err.find("warning: this render needs about ").expect(&err);
    let missing = err.find("not installed").expect(&err);
    assert!(warned < missing, "{err}");
    // A scene that fits says nothing.
    let small = write_scene(t.path(), "small.toml", TINY);
    let o = zoetrope(&["plan", small.to_str().unwrap()], t.path())
        .output()
        .unwrap();
    assert!(!stderr(&o).contains("this render needs"), "{}", stderr(&o));
}
