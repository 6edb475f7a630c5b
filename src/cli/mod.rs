//! Subcommands of the `zoetrope` binary, one file each: argument structs and
//! `run` functions, kept out of `main.rs` so that it stays a thin dispatcher.

pub mod bench;
pub mod convert;
pub mod grid;
pub mod plan;
pub mod render;
pub mod score;
pub mod weights;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// The process-wide Ctrl-C flag: the first Ctrl-C asks the render to stop
/// after the current step (it then closes the MP4 and prints how to resume);
/// a second one ends the process at once.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let _ = ctrlc::set_handler(move || {
            if f.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\nstopping after the current step (Ctrl-C again to abort)…");
        });
        flag
    })
    .clone()
}
