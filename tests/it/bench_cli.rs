//! `zoetrope bench --small`: the CPU/CI mode of the step benchmark runs the
//! real step on tiny models and reports sensible figures.

use std::process::Command;

fn zoetrope() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zoetrope"));
    // Keep the test light on a shared machine.
    c.env("OMP_NUM_THREADS", "1");
    c
}

#[test]
fn small_bench_reports_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let curve = dir.path().join("loss.csv");
    let out = zoetrope()
        .args([
            "bench",
            "--small",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--device",
            "cpu",
            "--config",
            "a",
            "--format",
            "json",
            "--loss-curve",
        ])
        .arg(&curve)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = v.as_array().expect("a JSON array");
    assert_eq!(results.len(), 1);
    let r = &results[0];
    assert_eq!(r["side"], "zoetrope");
    assert_eq!(r["config"], "a");
    assert_eq!(r["small"], true);
    assert_eq!(r["device"], "cpu");
    assert_eq!(r["precision"], "fp32");
    assert_eq!(r["steps"], 2);
    assert_eq!(r["warmup"], 1);
    assert_eq!(
        (r["width"].as_i64(), r["height"].as_i64()),
        (Some(64), Some(32))
    );
    let ms = r["ms_per_step"].as_f64().unwrap();
    let sps = r["steps_per_s"].as_f64().unwrap();
    assert!(ms > 0.0, "{ms}");
    assert!((ms * sps - 1000.0).abs() < 1e-6, "{ms} × {sps}");
    // No GPU: no memory figure and no share of a GPU peak.
    assert!(r["peak_gpu_mem_mib"].is_null());
    assert!(r["peak_share"].is_null());
    // The FLOP count adds up and is positive.
    let f = &r["flops"];
    let parts: f64 = [
        "perceptors_forward",
        "decoder_forward",
        "cutouts_forward",
        "quantize",
        "backward",
    ]
    .iter()
    .map(|k| f[k].as_f64().unwrap())
    .sum();
    let total = r["flops_per_step"].as_f64().unwrap();
    assert!(total > 1e8, "{total}");
    assert!((parts - total).abs() <= 1e-9 * total, "{parts} vs {total}");
    assert!(r["final_loss"].as_f64().unwrap().is_finite());

    // The loss curve holds every step, warm-up included, ending at the final loss.
    let text = std::fs::read_to_string(&curve).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows[0], "step,loss");
    assert_eq!(rows.len(), 1 + 3, "{text}");
    let last: f64 = rows[3].split(',').nth(1).unwrap().parse().unwrap();
    assert_eq!(last, r["final_loss"].as_f64().unwrap());
}

#[test]
fn bad_options_are_clear_errors() {
    let out = zoetrope()
        .args(["bench", "--small", "--config", "z"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--config z"), "{err}");

    let out = zoetrope()
        .args([
            "bench", "--small", "--steps", "0", "--config", "a", "--device", "cpu",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--steps 0"), "{err}");

    if !tch::Cuda::is_available() {
        let out = zoetrope()
            .args(["bench", "--small", "--device", "cuda"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no CUDA GPU"), "{err}");
    }
}
