//! In-process cost of pytti's cutout augmentations on one batch of
//! configuration a's size (60 cutouts of 224², float32, CPU): the forward
//! pass (one resample, colour jitter, erasing) and its backward pass, against
//! the same batch passed through unchanged, best of `ROUNDS`.
//!
//!     cargo run --example augment_cost [-- CUTOUTS SIDE]
//!
//! Each round draws fresh parameters from a seeded generator (the render's
//! draw), so the applied stages vary as in a render. BENCHMARKS.md compares
//! the figure with the step time of `zoetrope bench --config a --device cpu`.

use std::time::Instant;
use tch::Kind;
use zoetrope::guidance::augment::{apply, erase, geometric, jitter, AugmentParams};
use zoetrope::rng::Rng;

const ROUNDS: usize = 7;

fn main() -> zoetrope::Result<()> {
    let args: Vec<i64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(60);
    let r = args.get(1).copied().unwrap_or(224);
    let mut rng = Rng::new(0)?;
    let base = rng.rand(&[n, 3, r, r])?;
    let mut times = Vec::new();
    let mut fwd_times = Vec::new();
    for _ in 0..ROUNDS {
        let params = AugmentParams::draw(n as usize, r, &mut rng)?;
        let x = base.f_detach()?.f_set_requires_grad(true)?;
        let start = Instant::now();
        let out = apply(&x, &params)?;
        let fwd = start.elapsed().as_secs_f64();
        out.f_sum(Kind::Float)?.f_backward()?;
        let _ = x.f_grad()?.f_sum(Kind::Float)?.f_double_value(&[])?;
        times.push(start.elapsed().as_secs_f64());
        fwd_times.push(fwd);
    }
    let best = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min) * 1000.0;
    let median = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        s[s.len() / 2] * 1000.0
    };
    // The baseline: the same sum and backward without augmenting.
    let mut plain = Vec::new();
    for _ in 0..ROUNDS {
        let x = base.f_detach()?.f_set_requires_grad(true)?;
        let start = Instant::now();
        x.f_mul_scalar(1.0)?.f_sum(Kind::Float)?.f_backward()?;
        let _ = x.f_grad()?.f_sum(Kind::Float)?.f_double_value(&[])?;
        plain.push(start.elapsed().as_secs_f64());
    }
    // Each part's forward alone, on the last round's parameters.
    let params = AugmentParams::draw(n as usize, r, &mut rng)?;
    let part = |f: &dyn Fn() -> zoetrope::Result<tch::Tensor>| -> zoetrope::Result<f64> {
        let start = Instant::now();
        let _ = f()?;
        Ok(start.elapsed().as_secs_f64() * 1000.0)
    };
    println!(
        "forward parts: geometric {:.1} ms, jitter {:.1} ms, erase {:.1} ms",
        part(&|| geometric(&base, &params))?,
        part(&|| jitter(&base, &params))?,
        part(&|| erase(&base, &params))?,
    );
    println!(
        "{n} cutouts of {r}²: augment forward {:.1} ms (median {:.1}), forward + backward {:.1} ms (median {:.1}); unaugmented sum + backward {:.1} ms; {} threads",
        best(&fwd_times),
        median(&fwd_times),
        best(&times),
        median(&times),
        best(&plain),
        tch::get_num_threads(),
    );
    Ok(())
}
