//! `weights fetch`: download an official file, check it, convert it.
//!
//! The download goes to `<kind dir>/<slug>.source.<ext>.part`, appended to
//! with an HTTP `Range` request when a previous attempt was cut off, so a
//! large download resumes where it stopped. Only a complete download whose
//! size and SHA-256 match the manifest is renamed to `<slug>.source.<ext>`;
//! a size or checksum mismatch deletes the partial file (resuming it could
//! never succeed). The converted model is written through a temporary name and a
//! rename, so neither a half download nor a half conversion ever sits under
//! the final file name.

use super::{
    import_file, read_sidecar, sha256_file, with_suffix, ImportOptions, ImportReport,
    ManifestEntry, ShapeChecks, WeightsStore,
};
use crate::{Error, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to fetch.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Download from here instead of the manifest's URL and mirrors.
    pub url: Option<String>,
    /// Expect this SHA-256 of the download instead of the manifest's.
    pub sha256: Option<String>,
    /// Keep the official file after converting it.
    pub keep_source: bool,
    /// Download again even when a verified file is present.
    pub force: bool,
    /// Draw a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
}

/// What a fetch did.
#[derive(Debug, Clone)]
pub struct FetchReport {
    pub name: String,
    pub path: PathBuf,
    /// The file was present and matched its recorded checksum: nothing done.
    pub already_present: bool,
    /// The URL the file came from.
    pub url: Option<String>,
    /// SHA-256 of the download.
    pub source_sha256: Option<String>,
    /// Whether that matched a published checksum (false: none published).
    pub source_verified: bool,
    /// Where the official file was kept (`--keep-source`).
    pub source_kept: Option<PathBuf>,
    pub import: Option<ImportReport>,
}

/// Downloads, checks and converts one manifest model.
pub fn fetch(
    store: &WeightsStore,
    name: &str,
    opts: &FetchOptions,
    checks: &ShapeChecks,
) -> Result<FetchReport> {
    let entry = fetchable_entry(store, name)?;
    let dest = store.path_of(entry);
    let mut report = FetchReport {
        name: entry.name.clone(),
        path: dest.clone(),
        already_present: false,
        url: None,
        source_sha256: None,
        source_verified: false,
        source_kept: None,
        import: None,
    };
    if dest.is_file() && !opts.force && already_present(&dest, entry)? {
        report.already_present = true;
        return Ok(report);
    }
    let expected = expected_sha256(opts, entry)?;
    // `--sha256` names another file than the manifest's: its size is unknown.
    let expected_size = if opts.sha256.is_some() {
        None
    } else {
        entry.size
    };
    let dir = dest.parent().unwrap_or(&store.dir).to_path_buf();
    fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let source = dir.join(format!(
        "{}.source.{}",
        entry.slug(),
        entry.format.extension()
    ));
    let part = with_suffix(&source, ".part");
    let url = download_any(entry, opts, &part, expected_size)?;
    let want = Expected {
        sha256: expected.as_deref(),
        size: expected_size,
    };
    let got = verify_download(entry, &url, &part, &source, &want)?;
    report.source_verified = expected.is_some();
    let provenance = vec![
        format!("downloaded from {url}"),
        format!(
            "source sha256 {got} ({})",
            if expected.is_some() {
                "matches the published checksum"
            } else {
                "no checksum is published; recorded as downloaded"
            }
        ),
    ];
    report.url = Some(url);
    report.source_sha256 = Some(got);
    let imported = import_file(
        store,
        &source,
        &ImportOptions {
            as_name: Some(entry.name.clone()),
            provenance,
            consume_input: !opts.keep_source,
        },
        checks,
    )
    .map_err(|e| {
        e.context(format!(
            "downloaded {} to {}, but converting it failed",
            entry.name,
            source.display()
        ))
    })?;
    if source.is_file() {
        if opts.keep_source {
            report.source_kept = Some(source.clone());
        } else {
            fs::remove_file(&source)
                .map_err(|e| Error::io(format!("removing {}", source.display()), e))?;
        }
    }
    report.import = Some(imported);
    Ok(report)
}

/// The manifest entry `name` names, if it is one that can be downloaded.
fn fetchable_entry<'a>(store: &'a WeightsStore, name: &str) -> Result<&'a ManifestEntry> {
    let entry = store.manifest.find(None, name).ok_or_else(|| {
        let hint = store
            .manifest
            .suggest(None, name)
            .map(|s| format!("did you mean {s}? "))
            .unwrap_or_default();
        Error::input(format!(
            "unknown model {name:?}: {hint}fetch knows the CLIP models {} and the VQGANs {}",
            store.manifest.names(super::ModelKind::Clip),
            store.manifest.names(super::ModelKind::Vqgan)
        ))
    })?;
    if entry.is_generated() {
        return Err(Error::input(format!(
            "{} is not downloaded: it is generated locally: run `zoetrope weights tiny`",
            entry.name
        )));
    }
    Ok(entry)
}

/// Whether the existing `dest` matches its recorded checksum (nothing to
/// do); false when it does not (it is downloaded again). A file without a
/// recorded checksum was put there by hand and is never replaced unasked.
fn already_present(dest: &Path, entry: &ManifestEntry) -> Result<bool> {
    let Some(recorded) = read_sidecar(dest) else {
        return Err(Error::weights(format!(
            "{} already exists but has no recorded checksum ({} is missing). Record one by importing it (`zoetrope weights import {} --as {}`), or replace it with `zoetrope weights fetch --force {}`.",
            dest.display(),
            super::sidecar_path(dest).display(),
            dest.display(),
            entry.name,
            entry.name
        )));
    };
    if sha256_file(dest)? == recorded {
        return Ok(true);
    }
    eprintln!(
        "{} does not match its recorded checksum; downloading it again",
        dest.display()
    );
    Ok(false)
}

/// The SHA-256 the download must have (`--sha256`, else the manifest's), in
/// lower case; `None` when none is published.
fn expected_sha256(opts: &FetchOptions, entry: &ManifestEntry) -> Result<Option<String>> {
    match opts.sha256.as_deref().or(entry.source_sha256.as_deref()) {
        Some(s) if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) => {
            Ok(Some(s.to_ascii_lowercase()))
        }
        Some(s) => Err(Error::input(format!("--sha256 {s:?} is not 64 hex digits"))),
        None => Ok(None),
    }
}

/// Downloads `entry` into `part` from `--url`, else its URL and then its
/// mirrors in turn; returns the URL that worked. A source that announces
/// another size than `size` is passed over before its body is read.
fn download_any(
    entry: &ManifestEntry,
    opts: &FetchOptions,
    part: &Path,
    size: Option<u64>,
) -> Result<String> {
    let urls: Vec<&str> = match &opts.url {
        Some(u) => vec![u.as_str()],
        None => std::iter::once(entry.url.as_str())
            .chain(entry.mirrors.iter().map(String::as_str))
            .collect(),
    };
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(120))
        .build();
    let mut failures = Vec::new();
    for url in &urls {
        match download(&agent, entry, url, part, size, opts.progress) {
            Ok(()) => return Ok(url.to_string()),
            Err(e) => failures.push(format!("{url}: {}", e.message)),
        }
    }
    let keep = if part.is_file() {
        format!(
            "\n  The partial download is kept in {}; run the same command again to resume it.",
            part.display()
        )
    } else {
        String::new()
    };
    Err(Error::weights(format!(
        "could not download {}:\n  {}{keep}",
        entry.name,
        failures.join("\n  ")
    )))
}

/// What a finished download must be.
struct Expected<'a> {
    /// Its SHA-256 in lower case; `None` when none is published.
    sha256: Option<&'a str>,
    /// Its size in bytes; `None` when the manifest gives none.
    size: Option<u64>,
}

/// Checks the finished download `part` against `want`, its size first
/// (deleting it on a mismatch), and renames it to `source`; returns its
/// SHA-256.
fn verify_download(
    entry: &ManifestEntry,
    url: &str,
    part: &Path,
    source: &Path,
    want: &Expected,
) -> Result<String> {
    let reject = |what: String| {
        let deleted = match fs::remove_file(part) {
            Ok(()) => format!("{} was deleted", part.display()),
            Err(e) => format!("deleting {} failed too ({e})", part.display()),
        };
        Err(Error::weights(format!(
            "the download of {} from {url} {what}: the file is damaged or not the official one. {deleted}; nothing was installed.",
            entry.name
        )))
    };
    if let Some(size) = want.size {
        let got = fs::metadata(part)
            .map_err(|e| Error::io(format!("reading {}", part.display()), e))?
            .len();
        if got != size {
            return reject(format!("is {got} bytes, but {size} bytes were expected"));
        }
    }
    let got = sha256_file(part)?;
    if let Some(sha) = want.sha256 {
        if got != sha {
            return reject(format!("has SHA-256 {got}, but {sha} was expected"));
        }
    }
    fs::rename(part, source).map_err(|e| {
        Error::io(
            format!("renaming {} to {}", part.display(), source.display()),
            e,
        )
    })?;
    Ok(got)
}

/// `bytes a-b/total` → (a, total).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim();
    let (range, total) = rest.split_once('/')?;
    let total = total.trim().parse().ok();
    let start = if range.trim() == "*" {
        return Some((u64::MAX, total));
    } else {
        range.split_once('-')?.0.trim().parse().ok()?
    };
    Some((start, total))
}

/// Downloads `url` into `part`, resuming from its current length; refuses
/// a body whose announced total is not `size` (another file).
fn download(
    agent: &ureq::Agent,
    entry: &ManifestEntry,
    url: &str,
    part: &Path,
    size: Option<u64>,
    progress: bool,
) -> Result<()> {
    for attempt in 0..2 {
        let offset = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        let resp = match request(agent, url, part, offset, attempt)? {
            Answer::Body(resp) => *resp,
            Answer::Complete => return Ok(()),
            Answer::StartOver => continue,
        };
        let Some((start, total)) = body_range(&resp, part, offset, attempt)? else {
            continue;
        };
        if let (Some(want), Some(got)) = (size, total) {
            if got != want {
                return Err(Error::weights(format!(
                    "it serves {got} bytes, but {want} bytes were expected"
                )));
            }
        }
        return save_body(resp, entry, part, start, total, progress);
    }
    Err(Error::weights(
        "the server's answers to the resumed download did not fit together",
    ))
}

/// What a (possibly ranged) request for the rest of a download got.
enum Answer {
    /// A body to append or write.
    Body(Box<ureq::Response>),
    /// Nothing lies past what `part` already holds, which is all of it.
    Complete,
    /// `part` was deleted; try again from the start.
    StartOver,
}

/// Asks for `url` from byte `offset` on; a range the server cannot serve
/// either means the file is complete or (on the first attempt) starts over.
fn request(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    offset: u64,
    attempt: u32,
) -> Result<Answer> {
    let mut req = agent.get(url);
    if offset > 0 {
        req = req.set("Range", &format!("bytes={offset}-"));
    }
    match req.call() {
        Ok(r) => Ok(Answer::Body(Box::new(r))),
        Err(ureq::Error::Status(416, r)) if offset > 0 => {
            // Nothing past our end: complete if the sizes agree, else start over.
            let total = r
                .header("Content-Range")
                .and_then(parse_content_range)
                .and_then(|c| c.1);
            if total == Some(offset) {
                return Ok(Answer::Complete);
            }
            if attempt == 0 {
                fs::remove_file(part)
                    .map_err(|e| Error::io(format!("removing {}", part.display()), e))?;
                return Ok(Answer::StartOver);
            }
            Err(Error::weights(format!(
                "the server refused the range request (HTTP 416) for {}",
                part.display()
            )))
        }
        Err(ureq::Error::Status(code, r)) => {
            Err(Error::weights(format!("HTTP {code} {}", r.status_text())))
        }
        Err(ureq::Error::Transport(t)) => {
            // (Its Display repeats the URL, which the caller already names.)
            let mut what = match t.message() {
                Some(m) => format!("{}: {m}", t.kind()),
                None => t.kind().to_string(),
            };
            if let Some(src) = std::error::Error::source(&t) {
                what.push_str(&format!(" ({src})"));
            }
            Err(Error::weights(what))
        }
    }
}

/// Where `resp`'s body starts in the file and the file's total size, if
/// known; `None` when a resumed body starts elsewhere than `offset` on the
/// first attempt (`part` is deleted: start over).
fn body_range(
    resp: &ureq::Response,
    part: &Path,
    offset: u64,
    attempt: u32,
) -> Result<Option<(u64, Option<u64>)>> {
    let length: Option<u64> = resp
        .header("Content-Length")
        .and_then(|v| v.trim().parse().ok());
    match resp.status() {
        206 => {
            let (start, total) = resp
                .header("Content-Range")
                .and_then(parse_content_range)
                .ok_or_else(|| Error::weights("HTTP 206 without a usable Content-Range"))?;
            if start != offset {
                if attempt == 0 {
                    fs::remove_file(part)
                        .map_err(|e| Error::io(format!("removing {}", part.display()), e))?;
                    return Ok(None);
                }
                return Err(Error::weights(format!(
                    "asked to resume at byte {offset}, the server sent from byte {start}"
                )));
            }
            Ok(Some((start, total.or(length.map(|l| l + start)))))
        }
        200 => Ok(Some((0, length))),
        code => Err(Error::weights(format!(
            "unexpected HTTP {code} {}",
            resp.status_text()
        ))),
    }
}

/// Writes `resp`'s body into `part` from byte `start` (appending when
/// resuming), with a progress bar when asked, and syncs it; a body shorter
/// than `total` is an interrupted download.
fn save_body(
    resp: ureq::Response,
    entry: &ManifestEntry,
    part: &Path,
    start: u64,
    total: Option<u64>,
    progress: bool,
) -> Result<()> {
    let file = if start == 0 {
        OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(part)
    } else {
        OpenOptions::new().append(true).open(part)
    }
    .map_err(|e| Error::io(format!("opening {}", part.display()), e))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);

    let bar = if progress {
        ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:32}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(entry.name.clone());
    bar.set_position(start);

    let mut reader = resp.into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut have = start;
    let interrupted = |have: u64, why: String| {
        Error::weights(format!(
            "the download was interrupted at {have}{} bytes ({why})",
            total.map(|t| format!(" of {t}")).unwrap_or_default()
        ))
    };
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = out.flush();
                bar.abandon();
                return Err(interrupted(have, e.to_string()));
            }
        };
        out.write_all(&buf[..n])
            .map_err(|e| Error::io(format!("writing {}", part.display()), e))?;
        have += n as u64;
        bar.set_position(have);
    }
    out.flush()
        .map_err(|e| Error::io(format!("writing {}", part.display()), e))?;
    out.into_inner()
        .map_err(|e| Error::io(format!("writing {}", part.display()), e.error()))?
        .sync_all()
        .map_err(|e| Error::io(format!("writing {}", part.display()), e))?;
    bar.finish_and_clear();
    if let Some(t) = total {
        if have != t {
            return Err(interrupted(have, "the connection closed early".into()));
        }
    }
    Ok(())
}
