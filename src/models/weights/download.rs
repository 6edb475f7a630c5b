//! `weights fetch`: download an official file, check it, convert it.
//!
//! The download goes to `<kind dir>/<slug>.source.<ext>.part`, appended to
//! with an HTTP `Range` request when a previous attempt was cut off, so a
//! large download resumes where it stopped. Only a complete download whose
//! SHA-256 matches the manifest is renamed to `<slug>.source.<ext>`; a
//! checksum mismatch deletes the partial file (resuming it could never
//! succeed). The converted model is written through a temporary name and a
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
    if dest.is_file() && !opts.force {
        if let Some(recorded) = read_sidecar(&dest) {
            if sha256_file(&dest)? == recorded {
                report.already_present = true;
                return Ok(report);
            }
            eprintln!(
                "{} does not match its recorded checksum; downloading it again",
                dest.display()
            );
        } else {
            // A file put there by hand: never replaced without being asked.
            return Err(Error::weights(format!(
                "{} already exists but has no recorded checksum ({} is missing). Record one by importing it (`zoetrope weights import {} --as {}`), or replace it with `zoetrope weights fetch --force {}`.",
                dest.display(),
                super::sidecar_path(&dest).display(),
                dest.display(),
                entry.name,
                entry.name
            )));
        }
    }
    let expected = match opts.sha256.as_deref().or(entry.source_sha256.as_deref()) {
        Some(s) if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) => {
            Some(s.to_ascii_lowercase())
        }
        Some(s) => return Err(Error::input(format!("--sha256 {s:?} is not 64 hex digits"))),
        None => None,
    };
    let dir = dest.parent().unwrap_or(&store.dir).to_path_buf();
    fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let source = dir.join(format!(
        "{}.source.{}",
        entry.slug(),
        entry.format.extension()
    ));
    let part = with_suffix(&source, ".part");

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
    let mut used = None;
    for url in &urls {
        match download(&agent, entry, url, &part, opts.progress) {
            Ok(()) => {
                used = Some(url.to_string());
                break;
            }
            Err(e) => failures.push(format!("{url}: {}", e.message)),
        }
    }
    let Some(url) = used else {
        let keep = if part.is_file() {
            format!(
                "\n  The partial download is kept in {}; run the same command again to resume it.",
                part.display()
            )
        } else {
            String::new()
        };
        return Err(Error::weights(format!(
            "could not download {}:\n  {}{keep}",
            entry.name,
            failures.join("\n  ")
        )));
    };

    let got = sha256_file(&part)?;
    if let Some(want) = &expected {
        if &got != want {
            let _ = fs::remove_file(&part);
            return Err(Error::weights(format!(
                "the download of {} from {url} has SHA-256 {got}, but {want} was expected: the file is damaged or not the official one. It was deleted; nothing was installed.",
                entry.name
            )));
        }
    }
    fs::rename(&part, &source).map_err(|e| {
        Error::io(
            format!("renaming {} to {}", part.display(), source.display()),
            e,
        )
    })?;
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

/// Downloads `url` into `part`, resuming from its current length.
fn download(
    agent: &ureq::Agent,
    entry: &ManifestEntry,
    url: &str,
    part: &Path,
    progress: bool,
) -> Result<()> {
    for attempt in 0..2 {
        let offset = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        let mut req = agent.get(url);
        if offset > 0 {
            req = req.set("Range", &format!("bytes={offset}-"));
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(416, r)) if offset > 0 => {
                // Nothing past our end: complete if the sizes agree, else start over.
                let total = r
                    .header("Content-Range")
                    .and_then(parse_content_range)
                    .and_then(|c| c.1);
                if total == Some(offset) {
                    return Ok(());
                }
                if attempt == 0 {
                    fs::remove_file(part)
                        .map_err(|e| Error::io(format!("removing {}", part.display()), e))?;
                    continue;
                }
                return Err(Error::weights(format!(
                    "the server refused the range request (HTTP 416) for {}",
                    part.display()
                )));
            }
            Err(ureq::Error::Status(code, r)) => {
                return Err(Error::weights(format!("HTTP {code} {}", r.status_text())));
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
                return Err(Error::weights(what));
            }
        };
        let length: Option<u64> = resp
            .header("Content-Length")
            .and_then(|v| v.trim().parse().ok());
        let (start, total) = match resp.status() {
            206 => {
                let (start, total) = resp
                    .header("Content-Range")
                    .and_then(parse_content_range)
                    .ok_or_else(|| Error::weights("HTTP 206 without a usable Content-Range"))?;
                if start != offset {
                    if attempt == 0 {
                        fs::remove_file(part)
                            .map_err(|e| Error::io(format!("removing {}", part.display()), e))?;
                        continue;
                    }
                    return Err(Error::weights(format!(
                        "asked to resume at byte {offset}, the server sent from byte {start}"
                    )));
                }
                (start, total.or(length.map(|l| l + start)))
            }
            200 => (0, length),
            code => {
                return Err(Error::weights(format!(
                    "unexpected HTTP {code} {}",
                    resp.status_text()
                )))
            }
        };
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
        return Ok(());
    }
    Err(Error::weights(
        "the server's answers to the resumed download did not fit together",
    ))
}
