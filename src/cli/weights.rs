//! `zoetrope weights list|fetch|import|verify|tiny`: the model files.

use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use zoetrope::models::tiny::{is_untrained, write_tiny_models_with};
use zoetrope::models::weights::{
    checksum_state, fetch, import_file, read_header, verify_model, ChecksumState, FetchOptions,
    FetchReport, ImportOptions, ManifestEntry, ModelKind, ShapeChecks, VerifyReport, WeightsStore,
};
use zoetrope::{Error, Result};

#[derive(Args)]
pub struct WeightsArgs {
    /// The weights folder (default: $ZOETROPE_WEIGHTS, else ./weights, else the checkout's weights/).
    #[arg(long, global = true, value_name = "DIR")]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: WeightsCommand,
}

#[derive(Subcommand)]
enum WeightsCommand {
    /// Every known model: present or missing, file, size, checksum state,
    /// and where `fetch` would download it from (host, download size).
    List {
        /// Do not hash the files (only say whether a checksum is recorded).
        #[arg(long)]
        quick: bool,
    },
    /// Download official weights, check them and convert them to safetensors.
    Fetch {
        /// Model names (ViT-B/32, RN50, imagenet, ...).
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// Download from this URL instead of the manifest's (one NAME only).
        #[arg(long)]
        url: Option<String>,
        /// Expected SHA-256 of the download (default: the manifest's).
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        /// Keep the official .pt/.ckpt next to the converted file.
        #[arg(long)]
        keep_source: bool,
        /// Download again even if a verified file is present.
        #[arg(long)]
        force: bool,
    },
    /// Convert an official file (.pt TorchScript, Lightning .ckpt, open_clip .safetensors).
    Import {
        /// The file to import.
        file: PathBuf,
        /// Model name to import it as (default: recognised from the file name or shapes).
        #[arg(long = "as", value_name = "NAME")]
        as_name: Option<String>,
    },
    /// Check the installed files' checksums and tensor shapes.
    Verify {
        /// Only these models (default: every installed one).
        #[arg(value_name = "NAME")]
        names: Vec<String>,
    },
    /// Generate the small untrained models tiny-clip and tiny-vqgan (no
    /// network needed): real architectures, abstract imagery, for trying
    /// zoetrope out and for offline tests.
    Tiny {
        /// Replace files at their paths that differ from the generated ones.
        #[arg(long)]
        force: bool,
    },
}

/// The shape checks the commands use: the basic key checks, then the
/// architecture inferred from the shapes and compared tensor by tensor.
pub fn shape_checks() -> ShapeChecks {
    ShapeChecks::full()
}

pub fn run(args: WeightsArgs) -> Result<()> {
    let mut store = WeightsStore::from_env()?;
    if let Some(dir) = args.dir {
        store.dir = dir;
    }
    let checks = shape_checks();
    match args.command {
        WeightsCommand::List { quick } => list(&store, quick),
        WeightsCommand::Fetch {
            names,
            url,
            sha256,
            keep_source,
            force,
        } => {
            if (url.is_some() || sha256.is_some()) && names.len() != 1 {
                return Err(Error::input(
                    "--url and --sha256 apply to a single model: give one NAME",
                ));
            }
            let opts = FetchOptions {
                url,
                sha256,
                keep_source,
                force,
                progress: true,
            };
            for name in &names {
                print_fetched(&fetch(&store, name, &opts, &checks)?);
            }
            Ok(())
        }
        WeightsCommand::Import { file, as_name } => import(&store, &file, as_name, &checks),
        WeightsCommand::Verify { names } => verify(&store, &names, &checks),
        WeightsCommand::Tiny { force } => {
            for f in write_tiny_models_with(&store.dir, force)? {
                let what = if f.written {
                    "generated"
                } else {
                    "already present and identical"
                };
                println!("{}: {what} ({})", f.name, f.path.display());
                println!("  sha256 {}", f.sha256);
            }
            println!("These models are untrained: renders with them run end to end, but the imagery is abstract.");
            println!(
                "Use them with `perceptors: [tiny-clip]` and `vqgan_model: tiny-vqgan` in a scene."
            );
            Ok(())
        }
    }
}

/// Prints what fetching one model did.
fn print_fetched(r: &FetchReport) {
    if r.already_present {
        println!(
            "{}: already present and verified ({})",
            r.name,
            r.path.display()
        );
        return;
    }
    if let Some(i) = &r.import {
        println!("{}: {} ({} tensors)", r.name, r.path.display(), i.tensors);
        println!("  {}", i.description);
    }
    if let Some(url) = &r.url {
        println!("  downloaded from {url}");
    }
    match (&r.source_sha256, r.source_verified) {
        (Some(s), true) => {
            println!("  source sha256 {s} matches the published checksum")
        }
        (Some(s), false) => {
            println!("  source sha256 {s} (no published checksum to compare)")
        }
        _ => {}
    }
    if let Some(k) = &r.source_kept {
        println!("  official file kept at {}", k.display());
    }
}

/// `weights import FILE [--as NAME]`: imports one file and says what it holds.
fn import(
    store: &WeightsStore,
    file: &Path,
    as_name: Option<String>,
    checks: &ShapeChecks,
) -> Result<()> {
    let r = import_file(
        store,
        file,
        &ImportOptions {
            as_name,
            ..Default::default()
        },
        checks,
    )?;
    println!(
        "{} ({}) imported from {} ({}) to {}",
        r.name,
        r.kind,
        file.display(),
        r.container,
        r.path.display()
    );
    println!("  {}", r.description);
    println!("  {} tensors, sha256 {}", r.tensors, r.sha256);
    if !r.dropped.is_empty() {
        let shown: Vec<&str> = r.dropped.iter().take(6).map(String::as_str).collect();
        let more = r.dropped.len().saturating_sub(shown.len());
        println!(
            "  left out {} entries that are not this model's weights: {}{}",
            r.dropped.len(),
            shown.join(", "),
            if more > 0 {
                format!(", … ({more} more)")
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

fn human_size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

/// Model files in `<dir>/<kind>/` that the manifest does not name (imported with --as).
fn custom_files(store: &WeightsStore, kind: ModelKind) -> Vec<PathBuf> {
    let known: Vec<PathBuf> = store
        .manifest
        .of_kind(kind)
        .map(|e| store.path_of(e))
        .collect();
    let mut out: Vec<PathBuf> = std::fs::read_dir(store.dir.join(kind.dir_name()))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors") && !known.contains(p))
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    out.sort();
    out
}

/// Where `fetch` would download `e` from and how big the download is:
/// (host, with how many mirrors back it up; size).
fn download_source(e: Option<&ManifestEntry>) -> (String, String) {
    let Some(e) = e else {
        return ("-".into(), "-".into());
    };
    if e.is_generated() {
        return ("(generated)".into(), "-".into());
    }
    let mut from = e.host().unwrap_or("?").to_string();
    match e.mirrors.len() {
        0 => {}
        1 => from.push_str(" +1 mirror"),
        n => from.push_str(&format!(" +{n} mirrors")),
    }
    let size = match (e.size, e.approx_mb) {
        (Some(b), _) => human_size(b),
        (None, Some(mb)) => format!("~{mb} MB"),
        (None, None) => "?".into(),
    };
    (from, size)
}

fn list(store: &WeightsStore, quick: bool) -> Result<()> {
    println!("weights folder: {}", store.dir.display());
    println!(
        "{:<6} {:<16} {:<8} {:>10}  {:<10} {:<36} {:>10}  FILE",
        "KIND", "NAME", "STATUS", "SIZE", "CHECKSUM", "FROM", "DOWNLOAD"
    );
    for kind in ModelKind::ALL {
        // (name, path, manifest entry; None for the user's own files)
        let mut rows: Vec<(String, PathBuf, Option<&ManifestEntry>)> = store
            .manifest
            .of_kind(kind)
            .map(|e| (e.name.clone(), store.path_of(e), Some(e)))
            .collect();
        for p in custom_files(store, kind) {
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            rows.push((format!("{stem} (own)"), p, None));
        }
        for (name, path, entry) in rows {
            let generated = entry.is_some_and(ManifestEntry::is_generated);
            let (status, size, sum) = match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => {
                    let sum = match checksum_state(&path, !quick) {
                        Ok(s) => s.to_string(),
                        Err(e) => format!("error: {e}"),
                    };
                    let status = match read_header(&path)? {
                        Ok(_) => "present",
                        Err(_) => "damaged",
                    };
                    (status, human_size(m.len()), sum)
                }
                _ => ("missing", "-".to_string(), "-".to_string()),
            };
            let note = if status == "missing" && generated {
                "  untrained (generated): run `zoetrope weights tiny`"
            } else if generated || (status != "missing" && is_untrained(&path)) {
                "  untrained (generated)"
            } else {
                ""
            };
            let (from, download) = download_source(entry);
            println!(
                "{:<6} {:<16} {:<8} {:>10}  {:<10} {:<36} {:>10}  {}{note}",
                kind.dir_name(),
                name,
                status,
                size,
                sum,
                from,
                download,
                path.display()
            );
        }
    }
    Ok(())
}

fn print_report(name: &str, r: &VerifyReport) {
    if r.ok() {
        let desc = r.shapes.as_deref().unwrap_or_default();
        println!("ok      {name}: {desc}");
        if let ChecksumState::Verified(sha) = &r.checksum {
            println!("        sha256 {sha}  {}", r.file.display());
        }
    } else {
        println!("FAILED  {name} ({})", r.file.display());
        for p in r.problems() {
            println!("        {p}");
        }
    }
}

fn verify(store: &WeightsStore, names: &[String], checks: &ShapeChecks) -> Result<()> {
    // (display name, kind, file, manifest entry)
    let mut targets = Vec::new();
    if names.is_empty() {
        for kind in ModelKind::ALL {
            for e in store.manifest.of_kind(kind) {
                let p = store.path_of(e);
                if p.is_file() {
                    targets.push((e.name.clone(), kind, p, Some(e)));
                }
            }
            for p in custom_files(store, kind) {
                let stem = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                targets.push((stem, kind, p, None));
            }
        }
        if targets.is_empty() {
            println!(
                "no model files in {}; get some with `zoetrope weights fetch NAME` or `zoetrope weights import FILE`",
                store.dir.display()
            );
            return Ok(());
        }
    } else {
        for name in names {
            let entry = store.manifest.find(None, name);
            let kind = match entry {
                Some(e) => e.kind,
                None => kind_of_custom(store, name)?,
            };
            let path = store.resolve(kind, name)?;
            let label = entry
                .map(|e| e.name.clone())
                .unwrap_or_else(|| name.clone());
            targets.push((label, kind, path, entry));
        }
    }
    let mut failed = Vec::new();
    for (name, kind, path, entry) in &targets {
        let r = verify_model(*kind, path, *entry, checks)?;
        print_report(name, &r);
        if !r.ok() {
            failed.push(name.clone());
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::weights(format!(
            "{} of {} model files failed verification: {}",
            failed.len(),
            targets.len(),
            failed.join(", ")
        )))
    }
}

/// The kind of a model that is not in the manifest: a custom name or a path.
fn kind_of_custom(store: &WeightsStore, name: &str) -> Result<ModelKind> {
    for kind in ModelKind::ALL {
        if store.custom_path(kind, name).is_file() {
            return Ok(kind);
        }
    }
    let p = Path::new(name);
    if p.is_file() {
        if let Ok(Ok(h)) = read_header(p) {
            if let Some(k) = zoetrope::models::weights::detect_kind(&h.shapes()) {
                return Ok(k);
            }
        }
        return Err(Error::weights(format!(
            "{name} is neither a CLIP nor a VQGAN safetensors file"
        )));
    }
    // Let resolve produce the "unknown model" message with suggestions.
    store
        .resolve(ModelKind::Clip, name)
        .map(|_| ModelKind::Clip)
}
