//! `weights import`: official files → safetensors under the official key names.
//!
//! The input format is recognised from the file's bytes, not its name:
//! safetensors is read here; zip archives (TorchScript `.pt`, `torch.save`
//! files and Lightning `.ckpt`) and legacy pickles are handed to
//! `scripts/convert_weights.py` (compiled in) running under the project's
//! PyTorch, which dumps their tensors unchanged. The key clean-up is done
//! here for every format alike:
//!
//! - when keys start with `first_stage_model.` (a taming Net2NetTransformer
//!   checkpoint), only those are kept, without the prefix: the rest is the
//!   transformer and the conditioning model;
//! - `loss.*` (LPIPS and discriminator, training only) is dropped;
//! - `input_resolution`, `context_length`, `vocab_size` (bookkeeping entries
//!   of OpenAI's archives, dropped by OpenAI's own loader too) are dropped.

use super::{
    detect_kind, is_safe_file_name, read_header, sha256_file, with_suffix, write_sidecar,
    HeaderError, ManifestEntry, ModelKind, ShapeChecks, WeightsStore,
};
use crate::{Error, Result};
use safetensors::tensor::TensorView;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The converter script, compiled in so an installed binary needs only a
/// Python with PyTorch.
const CONVERT_SCRIPT: &str = include_str!("../../../scripts/convert_weights.py");

/// Environment variable naming the Python (with PyTorch) used for `.pt`/`.ckpt`.
pub const PYTHON_ENV: &str = "ZOETROPE_PYTHON";

/// Keys of OpenAI's archives that are not weights.
const CLIP_BOOKKEEPING: [&str; 3] = ["input_resolution", "context_length", "vocab_size"];

/// The Python that converts PyTorch files: `$ZOETROPE_PYTHON`, else the
/// project virtualenv of the checkout the binary was built from
/// (`<CARGO_MANIFEST_DIR>/.venv/bin/python`, made by `scripts/setup.sh`), else
/// `.venv/bin/python` in the current directory.
pub fn python_command() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(PYTHON_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(Error::weights(format!(
            "{PYTHON_ENV}={} does not exist; point it at a Python that has PyTorch",
            p.display()
        )));
    }
    let candidates = [
        Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
        PathBuf::from(".venv/bin/python"),
    ];
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        Error::weights(format!(
            "reading PyTorch .pt/.ckpt files needs Python with PyTorch, and none was found (looked for {}). Run scripts/setup.sh in the zoetrope checkout, or set {PYTHON_ENV} to a Python that has torch and safetensors. (safetensors files import without Python.)",
            candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The model name to import as (a manifest name, or a new name of the
    /// user's); `None`: recognised from the file name or its shapes.
    pub as_name: Option<String>,
    /// Lines recorded as provenance in the checksum sidecar (fetch adds the URL
    /// and source checksum).
    pub provenance: Vec<String>,
    /// Move a safetensors input instead of copying it when it needs no change
    /// (fetch's own downloads).
    pub consume_input: bool,
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub kind: ModelKind,
    /// The model's name (manifest name, or the custom name).
    pub name: String,
    pub path: PathBuf,
    /// "torchscript", "lightning", "state_dict" or "safetensors".
    pub container: String,
    pub tensors: usize,
    /// Keys left out (loss, other models, bookkeeping).
    pub dropped: Vec<String>,
    /// The shape check's description.
    pub description: String,
    /// SHA-256 of the written file (also in its sidecar).
    pub sha256: String,
}

enum Sniffed {
    Safetensors,
    Torch,
}

/// Recognises the input format, refusing garbage and truncated files with a
/// message that says which.
fn sniff(path: &Path) -> Result<Sniffed> {
    match read_header(path)? {
        Ok(_) => return Ok(Sniffed::Safetensors),
        Err(HeaderError::Truncated { expected, actual }) => {
            return Err(Error::weights(format!(
                "{} is a truncated safetensors file ({actual} of {expected} bytes); download or copy it again",
                path.display()
            )))
        }
        Err(HeaderError::NotSafetensors(_)) => {}
    }
    let io = |e: std::io::Error| Error::io(format!("reading {}", path.display()), e);
    let mut f = fs::File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let mut head = [0u8; 4];
    let got = f.read(&mut head).map_err(io)?;
    if got == 4 && head == *b"PK\x03\x04" {
        // A zip (TorchScript archive, torch.save >= 1.6, Lightning checkpoint)
        // ends with an end-of-central-directory record within its last 64 KiB.
        let tail_len = len.min(65_557);
        f.seek(SeekFrom::Start(len - tail_len)).map_err(io)?;
        let mut tail = vec![0u8; tail_len as usize];
        f.read_exact(&mut tail).map_err(io)?;
        if !tail.windows(4).any(|w| w == b"PK\x05\x06") {
            return Err(Error::weights(format!(
                "{} is truncated: a PyTorch zip archive without its end record ({len} bytes); download it again",
                path.display()
            )));
        }
        return Ok(Sniffed::Torch);
    }
    // Legacy torch.save files start with a pickle protocol 2 header.
    if got >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1]) {
        return Ok(Sniffed::Torch);
    }
    Err(Error::weights(format!(
        "{} is not a weights file zoetrope can import: not safetensors, not a PyTorch/TorchScript archive (.pt), not a Lightning checkpoint (.ckpt)",
        path.display()
    )))
}

/// Deletes a temporary file when dropped, unless it was kept.
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn path(&self) -> &Path {
        self.0.as_deref().expect("temp file path taken")
    }
    fn keep(mut self) -> PathBuf {
        self.0.take().expect("temp file path taken")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

fn run_converter(input: &Path, output: &Path) -> Result<String> {
    let python = python_command()?;
    let out = Command::new(&python)
        .arg("-c")
        .arg(CONVERT_SCRIPT)
        .arg(input)
        .arg(output)
        .output()
        .map_err(|e| Error::weights(format!("could not run {}: {e}", python.display())))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.trim().lines().last().unwrap_or("").to_string();
    match out.status.code() {
        Some(0) => {}
        Some(2) => {
            return Err(Error::weights(format!(
                "{} cannot be imported: {last}. Is it a complete official CLIP .pt or VQGAN .ckpt file?",
                input.display()
            )))
        }
        Some(3) => return Err(Error::weights(last)),
        _ => {
            return Err(Error::weights(format!(
                "converting {} with {} failed: {}",
                input.display(),
                python.display(),
                stderr.trim()
            )))
        }
    }
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        Error::internal(format!(
            "the converter's summary is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        ))
    })?;
    Ok(summary
        .get("container")
        .and_then(|c| c.as_str())
        .unwrap_or("pytorch")
        .to_string())
}

/// The official name for each key of a raw state dict (`None`: dropped).
pub fn official_keys<'a>(
    keys: impl IntoIterator<Item = &'a str> + Clone,
) -> Vec<(&'a str, Option<String>)> {
    let nested = keys
        .clone()
        .into_iter()
        .any(|k| k.starts_with("first_stage_model."));
    keys.into_iter()
        .map(|k| {
            let new = if nested {
                k.strip_prefix("first_stage_model.")
            } else {
                Some(k)
            };
            let new = new.filter(|n| !n.starts_with("loss.") && !CLIP_BOOKKEEPING.contains(n));
            (k, new.map(str::to_string))
        })
        .collect()
}

/// Turns an official weights file into `weights/<kind>/<name>.safetensors`
/// under the official key names, checks its shapes, and records its checksum.
pub fn import_file(
    store: &WeightsStore,
    input: &Path,
    opts: &ImportOptions,
    checks: &ShapeChecks,
) -> Result<ImportReport> {
    if !input.is_file() {
        return Err(Error::input(format!(
            "{} does not exist or is not a file",
            input.display()
        )));
    }
    // Validate --as before any slow work.
    let claimed = claim(store, opts)?;
    fs::create_dir_all(&store.dir).map_err(|e| {
        Error::io(
            format!("creating the weights folder {}", store.dir.display()),
            e,
        )
    })?;

    let (raw, container, _temp) = as_safetensors(store, input)?;
    let bytes = fs::read(&raw).map_err(|e| Error::io(format!("reading {}", raw.display()), e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
        Error::weights(format!(
            "{} is not a valid safetensors file: {e}",
            raw.display()
        ))
    })?;
    let names: Vec<String> = st.names().into_iter().cloned().collect();
    let mapping = official_keys(names.iter().map(String::as_str));
    let identity = mapping.iter().all(|(k, n)| n.as_deref() == Some(*k));
    let mut dropped: Vec<String> = mapping
        .iter()
        .filter(|(_, n)| n.is_none())
        .map(|(k, _)| k.to_string())
        .collect();
    dropped.sort();
    let shapes = official_shapes(&st, &mapping, &raw)?;

    let (kind, description) = checked_kind(checks, input, &shapes)?;

    // Which model it is.
    let (name, dest, entry) = destination(store, claimed, kind, input, &shapes)?;

    // A known source with a published checksum: say whether this is that file.
    let provenance = provenance(opts, input, &container, entry, &name)?;

    let dir = dest.parent().unwrap_or(&store.dir);
    fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let tmp = TempFile(Some(with_suffix(&dest, ".tmp")));
    if identity && container == "safetensors" {
        drop(st);
        drop(bytes);
        if opts.consume_input {
            fs::rename(input, tmp.path())
        } else {
            fs::copy(input, tmp.path()).map(|_| ())
        }
        .map_err(|e| Error::io(format!("writing {}", tmp.path().display()), e))?;
    } else {
        write_renamed(&st, &mapping, &raw, tmp.path())?;
    }
    let sha256 = sha256_file(tmp.path())?;
    let tmp_path = tmp.keep();
    fs::rename(&tmp_path, &dest).map_err(|e| {
        let _ = fs::remove_file(&tmp_path);
        Error::io(
            format!("renaming {} to {}", tmp_path.display(), dest.display()),
            e,
        )
    })?;
    write_sidecar(&dest, &sha256, &provenance)?;
    Ok(ImportReport {
        kind,
        name,
        path: dest,
        container,
        tensors: shapes.len(),
        dropped,
        description,
        sha256,
    })
}

/// The model `--as` names: a manifest model, else a custom file name.
fn claim<'a>(store: &'a WeightsStore, opts: &ImportOptions) -> Result<Option<Claim<'a>>> {
    Ok(match &opts.as_name {
        Some(n) => match store.manifest.find(None, n) {
            Some(e) => Some(Claim::Known(e)),
            None if is_safe_file_name(n) => Some(Claim::Custom(n.clone())),
            None => {
                return Err(Error::input(format!(
                    "--as {n:?}: not a known model, and not usable as a file name (use letters, digits and ._@+-)"
                )))
            }
        },
        None => None,
    })
}

/// `input` as a safetensors file: itself, or (PyTorch formats) a temporary
/// conversion in the weights folder, deleted when the returned guard drops.
/// Also returns the container's name.
fn as_safetensors(
    store: &WeightsStore,
    input: &Path,
) -> Result<(PathBuf, String, Option<TempFile>)> {
    Ok(match sniff(input)? {
        Sniffed::Safetensors => (input.to_path_buf(), "safetensors".to_string(), None),
        Sniffed::Torch => {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let unique = format!(
                ".import-{}-{}.safetensors",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let tmp = TempFile(Some(store.dir.join(unique)));
            let container = run_converter(input, tmp.path())?;
            (tmp.path().to_path_buf(), container, Some(tmp))
        }
    })
}

/// The shapes of the tensors kept, under their official names.
fn official_shapes(
    st: &safetensors::SafeTensors<'_>,
    mapping: &[(&str, Option<String>)],
    raw: &Path,
) -> Result<BTreeMap<String, Vec<i64>>> {
    let mut shapes = BTreeMap::new();
    for (k, n) in mapping {
        if let Some(n) = n {
            let t = st
                .tensor(k)
                .map_err(|e| Error::weights(format!("{}: {e}", raw.display())))?;
            shapes.insert(
                n.clone(),
                t.shape().iter().map(|d| *d as i64).collect::<Vec<i64>>(),
            );
        }
    }
    Ok(shapes)
}

/// Which kind of model `shapes` hold, and the kind's shape check's
/// description of them.
fn checked_kind(
    checks: &ShapeChecks,
    input: &Path,
    shapes: &BTreeMap<String, Vec<i64>>,
) -> Result<(ModelKind, String)> {
    let Some(kind) = detect_kind(shapes) else {
        let sample: Vec<&String> = shapes.keys().take(5).collect();
        return Err(Error::weights(format!(
            "{} holds neither a CLIP model (visual.*, token_embedding.weight) nor a VQGAN (encoder.*, decoder.*, quantize.*); its keys begin {sample:?}",
            input.display()
        )));
    };
    let description = (checks.for_kind(kind))(shapes).map_err(|e| {
        Error::weights(format!(
            "{} is not a usable {kind} model: {}",
            input.display(),
            e.message
        ))
    })?;
    Ok((kind, description))
}

/// Which model the import is (claimed with `--as`, else recognised), where it
/// goes, and its manifest entry; a manifest model must match its signature.
fn destination<'a>(
    store: &'a WeightsStore,
    claimed: Option<Claim<'a>>,
    kind: ModelKind,
    input: &Path,
    shapes: &BTreeMap<String, Vec<i64>>,
) -> Result<(String, PathBuf, Option<&'a ManifestEntry>)> {
    let (name, dest, entry): (String, PathBuf, Option<&ManifestEntry>) = match claimed {
        Some(Claim::Known(e)) => {
            if e.kind != kind {
                return Err(Error::weights(format!(
                    "{} holds a {kind} model, but {} is a {} model",
                    input.display(),
                    e.name,
                    e.kind
                )));
            }
            (e.name.clone(), store.path_of(e), Some(e))
        }
        Some(Claim::Custom(n)) => (n.clone(), store.custom_path(kind, &n), None),
        None => {
            let e = identify(store, kind, input, shapes)?;
            (e.name.clone(), store.path_of(e), Some(e))
        }
    };
    if let Some(e) = entry {
        let bad = e.signature_mismatches(shapes);
        if !bad.is_empty() {
            return Err(Error::weights(format!(
                "{} is not {}: {}. Import it under another name with --as NAME if it is a different model.",
                input.display(),
                e.name,
                bad.join("; ")
            )));
        }
    }

    Ok((name, dest, entry))
}

/// The provenance lines recorded beside the model: the caller's, else where
/// it was imported from and whether it is byte-identical to the official
/// download when the manifest publishes that file's checksum.
fn provenance(
    opts: &ImportOptions,
    input: &Path,
    container: &str,
    entry: Option<&ManifestEntry>,
    name: &str,
) -> Result<Vec<String>> {
    let mut provenance = opts.provenance.clone();
    if provenance.is_empty() {
        let mut line = format!(
            "imported from {} ({container})",
            input
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        if let Some(want) = entry.and_then(|e| {
            e.source_sha256
                .as_ref()
                .filter(|_| container == format_name(e))
        }) {
            let got = sha256_file(input)?;
            if &got == want {
                line.push_str(", the official file (source sha256 matches the manifest)");
            } else {
                eprintln!(
                    "warning: {} is not byte-identical to the official {} download (sha256 {got}, expected {want}); its shapes are right, importing it anyway",
                    input.display(),
                    name
                );
                line.push_str(&format!(
                    ", source sha256 {got} (differs from the official {want})"
                ));
            }
        }
        provenance.push(line);
    }
    Ok(provenance)
}

/// Writes the kept tensors of `st` under their official names to `out`.
fn write_renamed(
    st: &safetensors::SafeTensors<'_>,
    mapping: &[(&str, Option<String>)],
    raw: &Path,
    out: &Path,
) -> Result<()> {
    let mut views: Vec<(String, TensorView<'_>)> = Vec::with_capacity(mapping.len());
    for (k, n) in mapping {
        if let Some(n) = n {
            let t = st
                .tensor(k)
                .map_err(|e| Error::weights(format!("{}: {e}", raw.display())))?;
            views.push((n.clone(), t));
        }
    }
    let info: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    safetensors::serialize_to_file(views, &Some(info), out)
        .map_err(|e| Error::io(format!("writing {}", out.display()), e))
}

enum Claim<'a> {
    Known(&'a ManifestEntry),
    Custom(String),
}

fn format_name(e: &ManifestEntry) -> &'static str {
    e.format.name()
}

/// Recognises a model without `--as`: by the input's file name (`ViT-B-32.pt`,
/// `vqgan_imagenet_f16_16384.ckpt`), else by its shapes
/// ([`Manifest::identify_by_shapes`](super::Manifest::identify_by_shapes)).
fn identify<'a>(
    store: &'a WeightsStore,
    kind: ModelKind,
    input: &Path,
    shapes: &BTreeMap<String, Vec<i64>>,
) -> Result<&'a ManifestEntry> {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(e) = store.manifest.find(Some(kind), &stem) {
        return Ok(e);
    }
    if let Some(e) = store.manifest.identify_by_shapes(kind, shapes) {
        return Ok(e);
    }
    let all_signed = store
        .manifest
        .of_kind(kind)
        .all(|e| !e.signature.is_empty());
    let by_shape: Vec<&ManifestEntry> = store
        .manifest
        .of_kind(kind)
        .filter(|e| !e.signature.is_empty() && e.signature_mismatches(shapes).is_empty())
        .collect();
    let why = if by_shape.is_empty() {
        "its shapes match none of the known models".to_string()
    } else if !all_signed {
        format!("shapes cannot tell the {kind} models apart")
    } else {
        format!(
            "its shapes fit several ({})",
            by_shape
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Err(Error::input(format!(
        "cannot tell which {kind} model {} is: the file name {:?} names none and {why}. Say which with --as NAME ({}), or give it a name of your own with --as.",
        input.display(),
        stem,
        store.manifest.names(kind)
    )))
}
/// safetensors' failures keep an OS error as the cause.
impl crate::error::IoFailure for safetensors::SafeTensorError {
    fn into_cause(self) -> Option<crate::error::Cause> {
        match self {
            safetensors::SafeTensorError::IoError(e) => Some(e.into()),
            _ => None,
        }
    }
}
