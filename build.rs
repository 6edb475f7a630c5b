//! Link libtorch so that the binaries run without LD_LIBRARY_PATH and find CUDA.
//!
//! torch-sys exports the libtorch library folder as `DEP_TCH_LIBTORCH_LIB`.
//! We add it as an rpath, and force-link `libtorch_cuda` when present: without
//! `--no-as-needed` the linker drops it (no symbol is referenced directly) and
//! `tch::Cuda::is_available()` reports false on a GPU machine.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        if Path::new(&lib).join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
}
