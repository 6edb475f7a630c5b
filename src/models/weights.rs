//! Model weights: the manifest of known models, where their files live, and
//! the checks that a file is what it claims to be.
//!
//! # Files
//!
//! Every model is one safetensors file under the *official* state-dict key
//! names (`visual.conv1.weight`, `encoder.down.0.block.0.conv1.weight`, ...),
//! so the model code loads it without renaming and infers the architecture
//! from its shapes. Official distributions (OpenAI's TorchScript `.pt`,
//! taming's Lightning `.ckpt`, open_clip's safetensors) are turned into that
//! form by [`import_file`] and [`fetch`].
//!
//! # Where the weights folder is
//!
//! [`weights_dir`] decides, first match wins:
//! 1. `$ZOETROPE_WEIGHTS`, when set;
//! 2. `weights/` in the current directory, when it exists (running from a
//!    checkout, or from a folder a user prepared);
//! 3. `weights/` in the source checkout the binary was built from
//!    (`CARGO_MANIFEST_DIR`), when it still exists, so `cargo run` and the
//!    tests work from any directory;
//! 4. otherwise `weights/` in the current directory, created on first fetch.
//!
//! Inside, model files go to `clip/<slug>.safetensors` and
//! `vqgan/<slug>.safetensors` as the manifest says.
//!
//! # Checksums
//!
//! Two different checksums are involved and kept apart:
//! - the *source* checksum (manifest `source_sha256`) is of the official
//!   download (`ViT-B-32.pt`); [`fetch`] checks it before converting;
//! - the *file* checksum is of the converted `.safetensors` and is written at
//!   import/fetch time beside it as `<file>.sha256`, in `sha256sum` format
//!   (`sha256sum -c` reads it), with the provenance as `#` comments.
//!   [`verify_model`] compares the file against it.
//!
//! # Shape checks
//!
//! A [`ShapeCheck`] looks at the tensor names and shapes of a file and says
//! what model it describes, or why it is unusable. The caller chooses the
//! checks ([`ShapeChecks`]): the CLI can plug in the model families' own
//! architecture inference; [`ShapeChecks::basic`] checks the keys every CLIP
//! and VQGAN state dict has and that their shapes agree.

mod convert;
mod download;

pub use convert::{import_file, official_keys, python_command, ImportOptions, ImportReport};
pub use download::{fetch, FetchOptions, FetchReport};

use crate::{Error, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The built-in manifest, compiled in so that an installed binary needs no
/// data files to know its models.
const BUILTIN_MANIFEST: &str = include_str!("../../weights/manifest.toml");

/// Environment variable naming the weights folder.
pub const WEIGHTS_ENV: &str = "ZOETROPE_WEIGHTS";
/// Environment variable naming a manifest file to use instead of the built-in
/// one (private mirrors, tests).
pub const MANIFEST_ENV: &str = "ZOETROPE_MANIFEST";

/// The two families of models zoetrope loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// An OpenAI CLIP perceptor.
    Clip,
    /// A taming-transformers VQGAN (VQModel or GumbelVQ).
    Vqgan,
}

impl ModelKind {
    /// Both kinds, in display order.
    pub const ALL: [ModelKind; 2] = [ModelKind::Clip, ModelKind::Vqgan];

    /// The sub-folder of the weights folder holding this kind.
    pub fn dir_name(self) -> &'static str {
        match self {
            ModelKind::Clip => "clip",
            ModelKind::Vqgan => "vqgan",
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelKind::Clip => "CLIP",
            ModelKind::Vqgan => "VQGAN",
        })
    }
}

/// The format an official weights file is distributed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    /// OpenAI's TorchScript archives (`RN50.pt`); needs PyTorch to read.
    Torchscript,
    /// PyTorch-Lightning checkpoints (`last.ckpt`); needs PyTorch to read.
    Lightning,
    /// safetensors (open_clip's copies of the OpenAI weights); read directly.
    Safetensors,
    /// Not downloaded at all: an untrained model that `zoetrope weights tiny`
    /// generates on this machine ([`crate::models::tiny`]), so that a render can
    /// run end to end without network access. Such entries have no `url`.
    Generated,
}

impl SourceFormat {
    /// The usual file extension of this format.
    pub fn extension(self) -> &'static str {
        match self {
            SourceFormat::Torchscript => "pt",
            SourceFormat::Lightning => "ckpt",
            // Generated files are written directly as safetensors.
            SourceFormat::Safetensors | SourceFormat::Generated => "safetensors",
        }
    }

    /// The format's name as the manifest spells it.
    pub fn name(self) -> &'static str {
        match self {
            SourceFormat::Torchscript => "torchscript",
            SourceFormat::Lightning => "lightning",
            SourceFormat::Safetensors => "safetensors",
            SourceFormat::Generated => "generated",
        }
    }
}

/// One model of the manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    pub kind: ModelKind,
    /// The name scene files use (`ViT-B/32`, `imagenet`).
    pub name: String,
    /// Other accepted names (`vqgan_imagenet_f16_16384`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The converted file, relative to the weights folder.
    pub file: String,
    pub format: SourceFormat,
    /// The official download (empty for `generated` models, which have none).
    #[serde(default)]
    pub url: String,
    /// Other places with the same file, tried in order after `url`.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// SHA-256 of the official download (not of the converted file).
    pub source_sha256: Option<String>,
    /// Exact size in bytes of the official download, checked after it.
    pub size: Option<u64>,
    /// Approximate download size in megabytes (information only).
    pub approx_mb: Option<u64>,
    /// Shapes that identify the model among its kind.
    #[serde(default)]
    pub signature: BTreeMap<String, Vec<i64>>,
}

impl ManifestEntry {
    /// Whether `name` names this entry: its name, an alias, or its file stem,
    /// compared by [`normalize_name`].
    pub fn matches(&self, name: &str) -> bool {
        let n = normalize_name(name);
        !n.is_empty()
            && (normalize_name(&self.name) == n
                || self.aliases.iter().any(|a| normalize_name(a) == n)
                || normalize_name(self.slug()) == n)
    }

    /// Whether the model is generated locally (`format = "generated"`, an
    /// untrained model from `zoetrope weights tiny`) rather than downloaded.
    pub fn is_generated(&self) -> bool {
        self.format == SourceFormat::Generated
    }

    /// The host the download would come from first (`huggingface.co`):
    /// that of `url`; `None` for generated models.
    pub fn host(&self) -> Option<&str> {
        url_host(&self.url)
    }

    /// The file name without folder and extension (`ViT-B-32`).
    pub fn slug(&self) -> &str {
        let base = self.file.rsplit('/').next().unwrap_or(&self.file);
        base.strip_suffix(".safetensors").unwrap_or(base)
    }

    /// The shapes in `shapes` that contradict this entry's signature, as
    /// readable `key: expected [..], found [..]` strings.
    pub fn signature_mismatches(&self, shapes: &BTreeMap<String, Vec<i64>>) -> Vec<String> {
        self.signature
            .iter()
            .filter_map(|(k, want)| match shapes.get(k) {
                Some(got) if got == want => None,
                Some(got) => Some(format!("{k}: expected {want:?}, found {got:?}")),
                None => Some(format!("{k}: expected {want:?}, missing")),
            })
            .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    #[serde(default)]
    model: Vec<ManifestEntry>,
}

/// The list of known models.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub models: Vec<ManifestEntry>,
}

impl Manifest {
    /// The manifest compiled into the binary (`weights/manifest.toml`).
    pub fn builtin() -> Manifest {
        // The built-in manifest is checked by the tests; failing here is a bug.
        Manifest::parse(BUILTIN_MANIFEST, "built-in weights/manifest.toml")
            .expect("the built-in weights manifest is valid")
    }

    /// The manifest named by `$ZOETROPE_MANIFEST`, else the built-in one.
    pub fn from_env() -> Result<Manifest> {
        match std::env::var_os(MANIFEST_ENV) {
            Some(p) if !p.is_empty() => Manifest::load(Path::new(&p)),
            _ => Ok(Manifest::builtin()),
        }
    }

    /// Reads a manifest file.
    pub fn load(path: &Path) -> Result<Manifest> {
        let text = fs::read_to_string(path).map_err(|e| {
            Error::io(
                format!("reading the weights manifest {}", path.display()),
                e,
            )
        })?;
        Manifest::parse(&text, &path.display().to_string())
    }

    /// Parses and checks manifest text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest> {
        let file: ManifestFile = toml::from_str(text)
            .map_err(|e| Error::input(format!("weights manifest {origin}: {e}")))?;
        let bad = |m: &ManifestEntry, what: String| {
            Error::input(format!(
                "weights manifest {origin}: model {}: {what}",
                m.name
            ))
        };
        for (i, m) in file.model.iter().enumerate() {
            if normalize_name(&m.name).is_empty() {
                return Err(bad(m, "the name needs letters or digits".into()));
            }
            let prefix = format!("{}/", m.kind.dir_name());
            let rest = m.file.strip_prefix(&prefix).unwrap_or("");
            if !rest.ends_with(".safetensors") || !is_safe_file_name(rest) {
                return Err(bad(
                    m,
                    format!("file must be {prefix}<name>.safetensors, not {:?}", m.file),
                ));
            }
            if m.is_generated() {
                if !m.url.is_empty()
                    || !m.mirrors.is_empty()
                    || m.source_sha256.is_some()
                    || m.size.is_some()
                {
                    return Err(bad(
                        m,
                        "a generated model has no url, mirrors, source_sha256 or size".into(),
                    ));
                }
            } else if m.url.is_empty() {
                return Err(bad(
                    m,
                    format!(
                        "url is missing (only format = \"generated\" models have none; this one is {:?})",
                        m.format.name()
                    ),
                ));
            }
            if let Some(url) = std::iter::once(&m.url)
                .chain(&m.mirrors)
                .find(|u| !u.is_empty() && url_host(u).is_none())
            {
                return Err(bad(m, format!("{url:?} is not an http(s) URL")));
            }
            if m.size == Some(0) {
                return Err(bad(m, "size is in bytes and cannot be 0".into()));
            }
            if let Some(sha) = &m.source_sha256 {
                if !is_sha256_hex(sha) {
                    return Err(bad(
                        m,
                        format!("source_sha256 {sha:?} is not 64 hex digits"),
                    ));
                }
            }
            for earlier in &file.model[..i] {
                let clash = std::iter::once(&m.name)
                    .chain(&m.aliases)
                    .find(|n| earlier.matches(n));
                if let Some(n) = clash {
                    return Err(bad(m, format!("{n:?} also names {}", earlier.name)));
                }
                if earlier.file == m.file {
                    return Err(bad(
                        m,
                        format!("file {} is also {}'s", m.file, earlier.name),
                    ));
                }
            }
        }
        Ok(Manifest { models: file.model })
    }

    /// The entry `name` names among models of `kind` (any kind if `None`).
    pub fn find(&self, kind: Option<ModelKind>, name: &str) -> Option<&ManifestEntry> {
        self.models
            .iter()
            .filter(|m| kind.is_none_or(|k| m.kind == k))
            .find(|m| m.matches(name))
    }

    /// The entries of one kind.
    pub fn of_kind(&self, kind: ModelKind) -> impl Iterator<Item = &ManifestEntry> {
        self.models.iter().filter(move |m| m.kind == kind)
    }

    /// The one model of `kind` whose signature `shapes` fit. Shapes decide
    /// only when every model of the kind has a signature (all CLIP models):
    /// a VQGAN without one (wikiart) may share another's shapes (imagenet).
    pub fn identify_by_shapes(
        &self,
        kind: ModelKind,
        shapes: &BTreeMap<String, Vec<i64>>,
    ) -> Option<&ManifestEntry> {
        if self.of_kind(kind).any(|e| e.signature.is_empty()) {
            return None;
        }
        let mut fits = self
            .of_kind(kind)
            .filter(|e| e.signature_mismatches(shapes).is_empty());
        match (fits.next(), fits.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }

    /// The known name closest to an unknown `name`, for "did you mean".
    pub fn suggest(&self, kind: Option<ModelKind>, name: &str) -> Option<&str> {
        let names = self
            .models
            .iter()
            .filter(|m| kind.is_none_or(|k| m.kind == k))
            .map(|m| m.name.as_str());
        crate::catalog::closest(name, names)
    }

    /// The names of one kind, comma-separated, for messages.
    pub fn names(&self, kind: ModelKind) -> String {
        self.of_kind(kind)
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The catalog's one model-name normaliser ([`crate::catalog::normalize`]).
pub use crate::catalog::normalize as normalize_name;

/// A name usable as a file name in the weights folder: ASCII letters, digits
/// and `._@+-`, not starting with a dot.
/// The host of an `http://` or `https://` URL, without port or user.
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => host.split(':').next()?,
    };
    (!host.is_empty()).then_some(host)
}

fn is_safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@+-".contains(c))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// The weights folder (see the module documentation for the order).
pub fn weights_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(WEIGHTS_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let local = PathBuf::from("weights");
    if local.is_dir() {
        return local;
    }
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights");
    if checkout.is_dir() {
        return checkout;
    }
    local
}

/// A weights folder together with the manifest describing it.
#[derive(Debug, Clone)]
pub struct WeightsStore {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// Where a name led.
#[derive(Debug, Clone, Copy)]
pub enum Resolved<'a> {
    /// A model of the manifest.
    Known(&'a ManifestEntry),
    /// A model imported under a name of the user's (`weights/<kind>/<name>.safetensors`).
    Custom,
    /// A file path given directly.
    Path,
}

impl WeightsStore {
    pub fn new(dir: impl Into<PathBuf>, manifest: Manifest) -> Self {
        WeightsStore {
            dir: dir.into(),
            manifest,
        }
    }

    /// The folder from [`weights_dir`] and the manifest from [`Manifest::from_env`].
    pub fn from_env() -> Result<Self> {
        Ok(WeightsStore::new(weights_dir(), Manifest::from_env()?))
    }

    /// Where a manifest model's converted file lives.
    pub fn path_of(&self, entry: &ManifestEntry) -> PathBuf {
        self.dir.join(&entry.file)
    }

    /// Where a model imported under a custom `name` lives.
    pub fn custom_path(&self, kind: ModelKind, name: &str) -> PathBuf {
        self.dir
            .join(kind.dir_name())
            .join(format!("{name}.safetensors"))
    }

    /// The weights file for a model name or a path.
    ///
    /// Accepts a manifest name in any spelling [`normalize_name`] equates
    /// (`ViT-B/32`, `ViTB32`, `vqgan_imagenet_f16_16384`), the name of a model
    /// imported with `--as NAME`, or the path of an existing `.safetensors`
    /// file. A known but absent model is an error naming the expected file and
    /// the commands that provide it.
    pub fn resolve(&self, kind: ModelKind, name_or_path: &str) -> Result<PathBuf> {
        self.resolve_with(kind, name_or_path).map(|(p, _)| p)
    }

    /// [`resolve`](Self::resolve), also saying what the name was.
    pub fn resolve_with(
        &self,
        kind: ModelKind,
        name_or_path: &str,
    ) -> Result<(PathBuf, Resolved<'_>)> {
        if let Some(entry) = self.manifest.find(Some(kind), name_or_path) {
            let path = self.path_of(entry);
            if path.is_file() {
                return Ok((path, Resolved::Known(entry)));
            }
            if entry.is_generated() {
                return Err(Error::weights(format!(
                    "{kind} model {} is not installed: expected {}.\n  It is an untrained model generated locally: run `zoetrope weights tiny`.",
                    entry.name,
                    path.display(),
                )));
            }
            return Err(Error::weights(format!(
                "{kind} model {} is not installed: expected {}.\n  Download it with `zoetrope weights fetch {}`,\n  or convert an official file you already have with `zoetrope weights import FILE --as {}`.",
                entry.name,
                path.display(),
                quote_arg(&entry.name),
                quote_arg(&entry.name),
            )));
        }
        if let Some(other) = self.manifest.find(None, name_or_path) {
            return Err(Error::input(format!(
                "{} is a {} model, not a {kind} model (known {kind} models: {})",
                other.name,
                other.kind,
                self.manifest.names(kind)
            )));
        }
        let as_path = Path::new(name_or_path);
        if as_path.is_file() {
            let ext = as_path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if ext == "safetensors" {
                return Ok((as_path.to_path_buf(), Resolved::Path));
            }
            return Err(Error::weights(format!(
                "{} is not a safetensors file; convert it first with `zoetrope weights import {}`",
                as_path.display(),
                quote_arg(name_or_path)
            )));
        }
        if is_safe_file_name(name_or_path) {
            let custom = self.custom_path(kind, name_or_path);
            if custom.is_file() {
                return Ok((custom, Resolved::Custom));
            }
        }
        let hint = match self.manifest.suggest(Some(kind), name_or_path) {
            Some(s) => format!("did you mean {s}? "),
            None => String::new(),
        };
        Err(Error::weights(format!(
            "unknown {kind} model {name_or_path:?}: {hint}known {kind} models are {}; a path to a .safetensors file or a name given to `zoetrope weights import --as` also works",
            self.manifest.names(kind)
        )))
    }
}

/// [`WeightsStore::resolve`] with the folder and manifest from the environment.
pub fn resolve(kind: ModelKind, name_or_path: &str) -> Result<PathBuf> {
    WeightsStore::from_env()?.resolve(kind, name_or_path)
}

/// Quotes a command-line argument when the shell would need it.
fn quote_arg(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "._/@+-=:,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

// ------------------------------------------------------------- safetensors

/// One tensor's entry in a safetensors header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub dtype: String,
    pub shape: Vec<i64>,
    /// Byte range within the data section.
    pub offsets: (u64, u64),
}

/// A safetensors file's header, read without reading the tensor data.
#[derive(Debug, Clone)]
pub struct SafetensorsHeader {
    pub tensors: BTreeMap<String, TensorInfo>,
    pub metadata: BTreeMap<String, String>,
}

impl SafetensorsHeader {
    /// Tensor names and shapes, the input of a [`ShapeCheck`].
    pub fn shapes(&self) -> BTreeMap<String, Vec<i64>> {
        self.tensors
            .iter()
            .map(|(k, t)| (k.clone(), t.shape.clone()))
            .collect()
    }
}

/// Why a file is not a complete safetensors file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Not safetensors at all (no plausible header).
    NotSafetensors(String),
    /// A valid header whose data is cut short.
    Truncated { expected: u64, actual: u64 },
}

fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" => 8,
        _ => return None,
    })
}

/// Reads and checks the header of a safetensors file: JSON well-formed, every
/// tensor's byte range matches its dtype and shape, the ranges tile the data
/// section, and the file is exactly as long as the header says.
pub fn read_header(path: &Path) -> Result<std::result::Result<SafetensorsHeader, HeaderError>> {
    let mut f =
        fs::File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let len = f
        .metadata()
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
        .len();
    let not = |why: &str| Ok(Err(HeaderError::NotSafetensors(why.to_string())));
    if len < 10 {
        return not("the file is too short");
    }
    let mut n8 = [0u8; 8];
    f.read_exact(&mut n8)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let n = u64::from_le_bytes(n8);
    if !(2..=100_000_000).contains(&n) {
        return not("no safetensors header");
    }
    if 8 + n > len {
        return not("the header is longer than the file");
    }
    let mut json = vec![0u8; n as usize];
    f.read_exact(&mut json)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if json.first() != Some(&b'{') {
        return not("no safetensors header");
    }
    let value: serde_json::Value = match serde_json::from_slice(&json) {
        Ok(v) => v,
        Err(_) => return not("the header is not valid JSON"),
    };
    let Some(obj) = value.as_object() else {
        return not("the header is not a JSON object");
    };
    let mut tensors = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    for (k, v) in obj {
        if k == "__metadata__" {
            if let Some(m) = v.as_object() {
                for (mk, mv) in m {
                    metadata.insert(mk.clone(), mv.as_str().unwrap_or_default().to_string());
                }
            }
            continue;
        }
        let parsed = (|| {
            let dtype = v.get("dtype")?.as_str()?.to_string();
            let shape = v
                .get("shape")?
                .as_array()?
                .iter()
                .map(|d| d.as_i64().filter(|d| *d >= 0))
                .collect::<Option<Vec<i64>>>()?;
            let off = v.get("data_offsets")?.as_array()?;
            let (b, e) = (off.first()?.as_u64()?, off.get(1)?.as_u64()?);
            let elems = shape
                .iter()
                .try_fold(1u64, |a, d| a.checked_mul(*d as u64))?;
            let bytes = elems.checked_mul(dtype_size(&dtype)?)?;
            (e >= b && e - b == bytes).then_some(TensorInfo {
                dtype,
                shape,
                offsets: (b, e),
            })
        })();
        match parsed {
            Some(t) => {
                tensors.insert(k.clone(), t);
            }
            None => return not(&format!("tensor {k:?} has an invalid header entry")),
        }
    }
    let mut ranges: Vec<(u64, u64)> = tensors.values().map(|t| t.offsets).collect();
    ranges.sort();
    let mut end = 0;
    for (b, e) in ranges {
        if b != end {
            return not("the tensors' byte ranges overlap or leave gaps");
        }
        end = e;
    }
    let expected = 8 + n + end;
    if expected != len {
        if len < expected {
            return Ok(Err(HeaderError::Truncated {
                expected,
                actual: len,
            }));
        }
        return not("the file is longer than its header says");
    }
    Ok(Ok(SafetensorsHeader { tensors, metadata }))
}

/// Reads a complete safetensors file's header, or fails with a weights error
/// naming the file.
pub fn read_shapes(path: &Path) -> Result<BTreeMap<String, Vec<i64>>> {
    match read_header(path)? {
        Ok(h) => Ok(h.shapes()),
        Err(HeaderError::NotSafetensors(why)) => Err(Error::weights(format!(
            "{} is not a safetensors file ({why})",
            path.display()
        ))),
        Err(HeaderError::Truncated { expected, actual }) => Err(Error::weights(format!(
            "{} is truncated: {actual} of {expected} bytes; fetch or import it again",
            path.display()
        ))),
    }
}

// ------------------------------------------------------------ shape checks

/// Checks tensor names and shapes; returns a one-line description of the
/// model ("CLIP ViT, patch 32, ...") or an error saying what is wrong.
/// Plain function pointers, so that model families can supply their own
/// architecture inference (`|m| ClipConfig::infer(m).map(|c| ...)`).
pub type ShapeCheck = fn(&BTreeMap<String, Vec<i64>>) -> Result<String>;

/// The shape check used for each kind.
#[derive(Clone, Copy)]
pub struct ShapeChecks {
    pub clip: ShapeCheck,
    pub vqgan: ShapeCheck,
}

impl ShapeChecks {
    /// The checks of this module: [`basic_clip_check`] and [`basic_vqgan_check`].
    pub fn basic() -> Self {
        ShapeChecks {
            clip: basic_clip_check,
            vqgan: basic_vqgan_check,
        }
    }

    /// The check for `kind`.
    pub fn for_kind(&self, kind: ModelKind) -> ShapeCheck {
        match kind {
            ModelKind::Clip => self.clip,
            ModelKind::Vqgan => self.vqgan,
        }
    }
}

impl ShapeChecks {
    /// The complete checks: the basic ones, then the architecture inferred from
    /// the shapes (as the official loaders do) and every tensor the model
    /// reads compared with the file. This is what `weights verify` uses.
    pub fn full() -> Self {
        ShapeChecks {
            clip: full_clip_check,
            vqgan: full_vqgan_check,
        }
    }
}

/// Keys a file may carry beyond what the model reads.
const TOLERATED_EXTRA_KEYS: [&str; 3] = ["input_resolution", "context_length", "vocab_size"];

/// Compares a file's shapes with the shapes the inferred architecture reads.
fn compare_shapes(
    file: &BTreeMap<String, Vec<i64>>,
    expected: &BTreeMap<String, Vec<i64>>,
) -> Result<()> {
    let mut problems = Vec::new();
    for (key, shape) in expected {
        match file.get(key) {
            Some(s) if s == shape => {}
            Some(s) => problems.push(format!(
                "`{key}` has shape {s:?}, the model needs {shape:?}"
            )),
            // Older BatchNorm checkpoints lack the step counter; it is not used.
            None if key.ends_with("num_batches_tracked") => {}
            None => problems.push(format!("`{key}` is missing")),
        }
    }
    for key in file.keys() {
        if !expected.contains_key(key) && !TOLERATED_EXTRA_KEYS.contains(&key.as_str()) {
            problems.push(format!("`{key}` is not part of the model"));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let n = problems.len();
    problems.truncate(5);
    Err(Error::weights(format!(
        "{n} tensor(s) disagree with the architecture inferred from the file: {}{}",
        problems.join("; "),
        if n > 5 { "; …" } else { "" }
    )))
}

/// [`basic_clip_check`], then [`ClipConfig::infer`](crate::models::clip::ClipConfig::infer)
/// and a key-by-key comparison.
pub fn full_clip_check(m: &BTreeMap<String, Vec<i64>>) -> Result<String> {
    let basic = basic_clip_check(m)?;
    let config = crate::models::clip::ClipConfig::infer(m)?;
    compare_shapes(m, &config.state_dict_shapes()?)?;
    Ok(basic)
}

/// [`basic_vqgan_check`], then [`VqganConfig::infer`](crate::models::vqgan::VqganConfig::infer)
/// and a key-by-key comparison.
pub fn full_vqgan_check(m: &BTreeMap<String, Vec<i64>>) -> Result<String> {
    let basic = basic_vqgan_check(m)?;
    let config = crate::models::vqgan::VqganConfig::infer(m)?;
    compare_shapes(m, &config.expected_shapes())?;
    Ok(basic)
}

impl Default for ShapeChecks {
    fn default() -> Self {
        Self::basic()
    }
}

fn shape_of<'a>(m: &'a BTreeMap<String, Vec<i64>>, key: &str, rank: usize) -> Result<&'a [i64]> {
    match m.get(key) {
        Some(s) if s.len() == rank => Ok(s),
        Some(s) => Err(Error::weights(format!(
            "{key} has shape {s:?}; a {rank}-dimensional tensor was expected"
        ))),
        None => Err(Error::weights(format!("the tensor {key} is missing"))),
    }
}

fn has_prefix(m: &BTreeMap<String, Vec<i64>>, prefix: &str) -> bool {
    m.range(prefix.to_string()..)
        .next()
        .is_some_and(|(k, _)| k.starts_with(prefix))
}

/// The numbered children `prefix<N>.` present, e.g. the blocks of a layer.
fn count_children(m: &BTreeMap<String, Vec<i64>>, prefix: &str) -> usize {
    let mut seen = std::collections::BTreeSet::new();
    for k in m.keys().filter(|k| k.starts_with(prefix)) {
        if let Some(n) = k[prefix.len()..]
            .split('.')
            .next()
            .and_then(|s| s.parse::<u32>().ok())
        {
            seen.insert(n);
        }
    }
    seen.len()
}

/// The keys every OpenAI CLIP state dict has, and their agreement: the text
/// tower's width in `token_embedding.weight`, `positional_embedding` and
/// `text_projection`, and a ViT or ModifiedResNet visual tower whose output
/// width matches the text projection.
pub fn basic_clip_check(m: &BTreeMap<String, Vec<i64>>) -> Result<String> {
    if !has_prefix(m, "visual.") {
        return Err(Error::weights(
            "no visual.* tensors: there is no image tower",
        ));
    }
    let tok = shape_of(m, "token_embedding.weight", 2)?;
    let pos = shape_of(m, "positional_embedding", 2)?;
    let proj = shape_of(m, "text_projection", 2)?;
    let (vocab, width) = (tok[0], tok[1]);
    if pos[1] != width || proj[0] != width {
        return Err(Error::weights(format!(
            "the text tower's widths disagree: token_embedding.weight {tok:?}, positional_embedding {pos:?}, text_projection {proj:?}"
        )));
    }
    let embed = proj[1];
    let layers = count_children(m, "transformer.resblocks.");
    let visual = if m.contains_key("visual.conv1.weight")
        && m.contains_key("visual.class_embedding")
    {
        let conv = shape_of(m, "visual.conv1.weight", 4)?;
        let vproj = shape_of(m, "visual.proj", 2)?;
        let vpos = shape_of(m, "visual.positional_embedding", 2)?;
        if vproj[1] != embed || vproj[0] != conv[0] || vpos[1] != conv[0] {
            return Err(Error::weights(format!(
                "the ViT image tower's widths disagree: visual.conv1.weight {conv:?}, visual.positional_embedding {vpos:?}, visual.proj {vproj:?}, text_projection {proj:?}"
            )));
        }
        let grid = ((vpos[0] - 1) as f64).sqrt().round() as i64;
        format!(
            "ViT image tower (width {}, {} layers, patch {}, {} px)",
            conv[0],
            count_children(m, "visual.transformer.resblocks."),
            conv[3],
            grid * conv[3]
        )
    } else if m.contains_key("visual.attnpool.positional_embedding") {
        let apos = shape_of(m, "visual.attnpool.positional_embedding", 2)?;
        let cproj = shape_of(m, "visual.attnpool.c_proj.weight", 2)?;
        if cproj[0] != embed {
            return Err(Error::weights(format!(
                "the ResNet image tower's output width {} differs from text_projection {proj:?}",
                cproj[0]
            )));
        }
        let blocks: Vec<String> = (1..=4)
            .map(|i| count_children(m, &format!("visual.layer{i}.")).to_string())
            .collect();
        let grid = ((apos[0] - 1) as f64).sqrt().round() as i64;
        format!(
            "ResNet image tower (blocks {}, {} px)",
            blocks.join("-"),
            grid * 32
        )
    } else {
        return Err(Error::weights(
            "the visual.* tensors are neither a ViT (visual.conv1.weight, visual.class_embedding) nor a ResNet (visual.attnpool.*)",
        ));
    };
    Ok(format!(
        "CLIP: {visual}; text width {width}, {layers} layers, context {}, vocabulary {vocab}; embedding {embed}",
        pos[0]
    ))
}

/// The parts every taming VQGAN state dict has (`encoder.*`, `decoder.*`,
/// `quantize.*`, `quant_conv.weight`) and their agreement: the codebook
/// (VQ `quantize.embedding.weight` or Gumbel `quantize.embed.weight`) has
/// the width `quant_conv` produces and `post_quant_conv` reads.
pub fn basic_vqgan_check(m: &BTreeMap<String, Vec<i64>>) -> Result<String> {
    for part in ["encoder.", "decoder.", "quantize."] {
        if !has_prefix(m, part) {
            return Err(Error::weights(format!(
                "no {part}* tensors: this is not a VQGAN"
            )));
        }
    }
    let qconv = shape_of(m, "quant_conv.weight", 4)?;
    let (kind, codebook) = if let Some(cb) = m.get("quantize.embedding.weight") {
        ("VQ", cb.clone())
    } else if let Some(cb) = m.get("quantize.embed.weight") {
        ("Gumbel", cb.clone())
    } else {
        return Err(Error::weights(
            "no codebook: neither quantize.embedding.weight (VQ) nor quantize.embed.weight (Gumbel)",
        ));
    };
    if codebook.len() != 2 {
        return Err(Error::weights(format!(
            "the codebook has shape {codebook:?}; 2 dimensions were expected"
        )));
    }
    let (codes, dim) = (codebook[0], codebook[1]);
    if kind == "VQ" && qconv[0] != dim {
        return Err(Error::weights(format!(
            "quant_conv.weight {qconv:?} does not produce the codebook width {dim}"
        )));
    }
    if kind == "Gumbel" {
        // GumbelVQ projects the encoder output to logits over the codes.
        let p = shape_of(m, "quantize.proj.weight", 4)?;
        if p[0] != codes {
            return Err(Error::weights(format!(
                "quantize.proj.weight {p:?} does not give one logit per code ({codes})"
            )));
        }
    }
    if let Some(pq) = m.get("post_quant_conv.weight") {
        if pq.len() != 4 || pq[1] != dim {
            return Err(Error::weights(format!(
                "post_quant_conv.weight {pq:?} does not read the codebook width {dim}"
            )));
        }
    }
    let levels = count_children(m, "encoder.down.");
    if levels == 0 {
        return Err(Error::weights(
            "no encoder.down.N blocks: this is not a taming VQGAN encoder",
        ));
    }
    Ok(format!(
        "VQGAN: {kind} codebook {codes} × {dim}, f{}, {levels} levels",
        1u64 << (levels - 1)
    ))
}

/// Which kind a state dict is, from its keys (`None`: neither).
pub fn detect_kind(m: &BTreeMap<String, Vec<i64>>) -> Option<ModelKind> {
    if has_prefix(m, "visual.")
        && (m.contains_key("token_embedding.weight") || m.contains_key("text_projection"))
    {
        Some(ModelKind::Clip)
    } else if has_prefix(m, "encoder.") && has_prefix(m, "decoder.") && has_prefix(m, "quantize.") {
        Some(ModelKind::Vqgan)
    } else {
        None
    }
}

// ---------------------------------------------------------- checksums

/// The lower-case hex SHA-256 of a file, read in 1 MiB chunks.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f =
        fs::File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// The lower-case hex SHA-256 of bytes in memory.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sidecar holding a converted file's checksum: `<file>.sha256`.
pub fn sidecar_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

/// Writes `<file>.sha256` in `sha256sum` format, with `provenance` lines as
/// `#` comments (where the file came from, the source checksum).
pub fn write_sidecar(file: &Path, sha256: &str, provenance: &[String]) -> Result<()> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut text = String::from("# zoetrope: SHA-256 of the converted weights file (checked by `zoetrope weights verify`)\n");
    for line in provenance {
        text.push_str(&format!("# {}\n", line.replace('\n', " ")));
    }
    text.push_str(&format!("{sha256}  {name}\n"));
    let side = sidecar_path(file);
    write_atomic(&side, text.as_bytes())
}

/// The checksum recorded in `<file>.sha256`, if there is a readable one.
pub fn read_sidecar(file: &Path) -> Option<String> {
    let text = fs::read_to_string(sidecar_path(file)).ok()?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .find_map(|l| l.split_whitespace().next().filter(|h| is_sha256_hex(h)))
        .map(str::to_ascii_lowercase)
}

pub(crate) use crate::atomic::write_atomic;

/// `path` with `suffix` appended to its file name.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

// ------------------------------------------------------------- verify

/// The state of a file's checksum against its sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChecksumState {
    /// The file's SHA-256 equals the recorded one.
    Verified(String),
    /// The file changed since it was recorded.
    Mismatch { recorded: String, actual: String },
    /// No `<file>.sha256` sidecar (a file copied in by hand).
    NotRecorded,
    /// Not computed (quick listing): whether a record exists.
    Unchecked { recorded: bool },
}

impl fmt::Display for ChecksumState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChecksumState::Verified(_) => f.write_str("verified"),
            ChecksumState::Mismatch { .. } => f.write_str("MISMATCH"),
            ChecksumState::NotRecorded => f.write_str("no record"),
            ChecksumState::Unchecked { recorded: true } => f.write_str("recorded"),
            ChecksumState::Unchecked { recorded: false } => f.write_str("no record"),
        }
    }
}

/// Compares a file with its sidecar; `hash = false` only looks for the record.
pub fn checksum_state(file: &Path, hash: bool) -> Result<ChecksumState> {
    let recorded = read_sidecar(file);
    if !hash {
        return Ok(ChecksumState::Unchecked {
            recorded: recorded.is_some(),
        });
    }
    let Some(recorded) = recorded else {
        return Ok(ChecksumState::NotRecorded);
    };
    let actual = sha256_file(file)?;
    Ok(if actual == recorded {
        ChecksumState::Verified(actual)
    } else {
        ChecksumState::Mismatch { recorded, actual }
    })
}

/// The outcome of verifying one file.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub file: PathBuf,
    pub checksum: ChecksumState,
    /// The shape check's description, or its error message.
    pub shapes: std::result::Result<String, String>,
    /// Signature shapes that contradict the manifest entry.
    pub signature: Vec<String>,
}

impl VerifyReport {
    /// Whether everything checked out.
    pub fn ok(&self) -> bool {
        matches!(self.checksum, ChecksumState::Verified(_))
            && self.shapes.is_ok()
            && self.signature.is_empty()
    }

    /// What is wrong, one clause per problem, with what to do.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        match &self.checksum {
            ChecksumState::Mismatch { recorded, actual } => out.push(format!(
                "checksum mismatch: recorded {recorded}, file has {actual} (the file changed or is damaged; fetch or import it again)"
            )),
            ChecksumState::NotRecorded | ChecksumState::Unchecked { recorded: false } => out.push(format!(
                "no recorded checksum ({} is missing; import the file with `zoetrope weights import` to record one)",
                sidecar_path(&self.file).display()
            )),
            _ => {}
        }
        if let Err(e) = &self.shapes {
            out.push(format!("shapes: {e}"));
        }
        if !self.signature.is_empty() {
            out.push(format!(
                "not the model the manifest names: {}",
                self.signature.join("; ")
            ));
        }
        out
    }
}

/// Verifies a model file: its checksum against the sidecar, its header, the
/// kind's shape check, and the manifest entry's signature when there is one.
pub fn verify_model(
    kind: ModelKind,
    file: &Path,
    entry: Option<&ManifestEntry>,
    checks: &ShapeChecks,
) -> Result<VerifyReport> {
    let checksum = checksum_state(file, true)?;
    let (shapes, signature) = match read_shapes(file) {
        Ok(m) => {
            let described = (checks.for_kind(kind))(&m).map_err(|e| e.message);
            let sig = entry
                .map(|e| e.signature_mismatches(&m))
                .unwrap_or_default();
            (described, sig)
        }
        Err(e) => (Err(e.message), Vec::new()),
    };
    Ok(VerifyReport {
        file: file.to_path_buf(),
        checksum,
        shapes,
        signature,
    })
}
