//! Link libtorch so that the binaries run without LD_LIBRARY_PATH and find
//! CUDA, and build the small C++ shim: explicit random generators
//! (csrc/rng.cpp, always built), CUDA graphs and allocator statistics
//! (csrc/cuda_graph.cpp) and the lean frozen-weight convolutions
//! (csrc/lean_ops.cpp).
//!
//! torch-sys exports the libtorch library folder as `DEP_TCH_LIBTORCH_LIB`.
//! We add it as an rpath, and force-link `libtorch_cuda` when present: without
//! `--no-as-needed` the linker drops it (no symbol is referenced directly) and
//! `tch::Cuda::is_available()` reports false on a GPU machine.
//!
//! The generators need only libtorch's headers, which tch itself compiles
//! against, so they are part of every build. The rest of the shim needs
//! libtorch's CUDA build and the CUDA runtime headers (the
//! PyTorch wheel's `nvidia/cu13/include`, or `/usr/local/cuda/include`). Where
//! either is missing the crate builds without it (cfg `zoetrope_shim`
//! unset): the step then runs without graphs and the VQGAN decoder keeps
//! libtorch's activations for its backward pass.
use std::path::{Path, PathBuf};

fn cuda_include(torch_root: &Path) -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("ZOETROPE_CUDA_INCLUDE") {
        return Some(PathBuf::from(dir));
    }
    // <site-packages>/torch → <site-packages>/nvidia/cu*/include
    let site = torch_root.canonicalize().ok()?.parent()?.to_path_buf();
    let mut found: Vec<PathBuf> = std::fs::read_dir(site.join("nvidia"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("include"))
        .filter(|p| p.join("cuda_runtime_api.h").exists())
        .collect();
    found.sort();
    found
        .pop()
        .or_else(|| Some(PathBuf::from("/usr/local/cuda/include")))
        .filter(|p| p.join("cuda_runtime_api.h").exists())
}

/// A C++ build against libtorch's headers, as torch-sys compiles its own.
fn torch_build(torch_root: &Path) -> cc::Build {
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .include(torch_root.join("include"))
        .include(torch_root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .warnings(false);
    build
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc/cuda_graph.cpp");
    println!("cargo:rerun-if-changed=csrc/lean_ops.cpp");
    println!("cargo:rerun-if-changed=csrc/shim.h");
    println!("cargo:rerun-if-changed=csrc/rng.cpp");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=ZOETROPE_CUDA_INCLUDE");
    println!("cargo:rustc-check-cfg=cfg(zoetrope_shim)");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    let lib = PathBuf::from(lib);
    let Some(torch_root) = lib.parent().map(Path::to_path_buf) else {
        panic!("libtorch's library folder {} has no parent", lib.display());
    };
    torch_build(&torch_root)
        .file("csrc/rng.cpp")
        .compile("zoetrope_rng");
    if !lib.join("libtorch_cuda.so").exists() {
        return;
    }
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    let Some(cuda) = cuda_include(&torch_root) else {
        println!(
            "cargo:warning=CUDA runtime headers not found: building without the C++ shim: no CUDA graphs, no lean convolutions (set ZOETROPE_CUDA_INCLUDE)"
        );
        return;
    };
    let built = torch_build(&torch_root)
        .file("csrc/cuda_graph.cpp")
        .file("csrc/lean_ops.cpp")
        .include(cuda)
        .try_compile("zoetrope_cuda_graph");
    if let Err(e) = built {
        // Everything else works without the shim; say why it is missing.
        println!(
            "cargo:warning=building without the C++ shim (CUDA graphs, lean convolutions): it did not compile ({e})"
        );
        return;
    }
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=c10_cuda");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-cfg=zoetrope_shim");
}
