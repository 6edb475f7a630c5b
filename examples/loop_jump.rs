//! How well a render loops: the jump from its last frame back to the first
//! against the mean change from one frame to the next, both as mean
//! absolute pixel differences of the PNGs (0–255).
//!
//!     cargo run --example loop_jump -- out/quickstart [out/other …]
//!
//! (`zoetrope::output::loop_jump`; BENCHMARKS.md records it for the quick
//! start with and without `loop_frames`.)

fn main() {
    let dirs: Vec<String> = std::env::args().skip(1).collect();
    if dirs.is_empty() {
        eprintln!("usage: cargo run --example loop_jump -- RUN_FOLDER [RUN_FOLDER …]");
        std::process::exit(2);
    }
    println!("run\tframes\tclosing_jump\tmean_step\tratio");
    for dir in dirs {
        match zoetrope::output::loop_jump::loop_jump(std::path::Path::new(&dir)) {
            Ok(j) => println!(
                "{dir}\t{}\t{:.3}\t{:.3}\t{:.2}",
                j.frames,
                j.closing,
                j.mean_step,
                j.ratio()
            ),
            Err(e) => {
                eprintln!("error: {}", e.message);
                std::process::exit(e.exit_code());
            }
        }
    }
}
