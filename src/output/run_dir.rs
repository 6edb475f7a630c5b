//! The run folder `<output dir>/<file_namespace>/` (docs/design.md §9).
//!
//! `allow_overwrite = false` (the default) must never touch an earlier run.
//! Decision: when `<file_namespace>/` already exists and is not empty, the
//! run goes to the first free `<file_namespace>_2/`, `<file_namespace>_3/`, …
//! rather than failing, so re-running a scene simply makes a new numbered
//! run; the chosen folder is printed by the caller. An existing *empty*
//! folder is used as is, since nothing in it can be overwritten.
//! Folders are claimed with an atomic `create_dir`, so two renders started at
//! once never share one.
//!
//! `allow_overwrite = true` reuses `<file_namespace>/`. Nothing of the earlier
//! run goes when the folder is claimed: the render removes the earlier run's
//! files ([`RunDir::remove_run_files`]) only once its models have loaded and
//! its prompts are embedded, just before it writes its own, so a render that
//! fails at the start leaves the earlier run whole. The user's own files in
//! the folder stay.
//!
//! The video inside is named after the folder (`<folder>/<folder>.mp4`), so a
//! numbered run's video (`city_2/city_2.mp4`) stays distinguishable once copied
//! elsewhere.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::atomic::write_json_atomic;
use crate::error::{Error, Result};
use crate::output::frames::{frame_file_name, parse_frame_file_name};

/// Highest suffix tried before giving up on finding a free folder name.
const MAX_SUFFIX: u32 = 9999;

/// A run's output folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    /// The folder itself.
    pub path: PathBuf,
    /// Its name: `file_namespace`, or `file_namespace_N` when numbered.
    pub name: String,
}

impl RunDir {
    /// Creates (or, with `allow_overwrite`, reuses) the folder for a new run
    /// under `output_dir`; see the module documentation for the naming rule.
    pub fn create(output_dir: &Path, file_namespace: &str, allow_overwrite: bool) -> Result<Self> {
        check_namespace(file_namespace)?;
        fs::create_dir_all(output_dir).map_err(|e| {
            Error::io(
                format!(
                    "could not create the output folder {}",
                    output_dir.display()
                ),
                e,
            )
        })?;
        if allow_overwrite {
            let path = output_dir.join(file_namespace);
            fs::create_dir_all(&path)
                .map_err(|e| Error::io(format!("could not create {}", path.display()), e))?;
            return Ok(RunDir {
                path,
                name: file_namespace.to_string(),
            });
        }
        for n in 1..=MAX_SUFFIX {
            let name = if n == 1 {
                file_namespace.to_string()
            } else {
                format!("{file_namespace}_{n}")
            };
            let path = output_dir.join(&name);
            match fs::create_dir(&path) {
                Ok(()) => return Ok(RunDir { path, name }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if path.is_dir() && is_empty_dir(&path)? {
                        return Ok(RunDir { path, name });
                    }
                }
                Err(e) => {
                    return Err(Error::io(
                        format!("could not create the run folder {}", path.display()),
                        e,
                    ))
                }
            }
        }
        Err(Error::input(format!(
            "{} already holds {MAX_SUFFIX} runs named {file_namespace}; choose another \
             file_namespace or clean up the folder",
            output_dir.display()
        )))
    }

    /// Opens an existing run folder (for `--resume`), touching nothing.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_dir() {
            return Err(Error::input(format!(
                "run folder {} does not exist; --resume needs the folder of an earlier run",
                path.display()
            )));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::input(format!("{} is not a run folder", path.display())))?;
        Ok(RunDir {
            path: path.to_path_buf(),
            name,
        })
    }

    /// Path of video frame `index` (1-based).
    pub fn frame_path(&self, index: usize) -> PathBuf {
        self.path.join(frame_file_name(index))
    }

    /// Path of the MP4: `<folder>/<folder name>.mp4`.
    pub fn video_path(&self) -> PathBuf {
        self.path.join(format!("{}.mp4", self.name))
    }

    /// Writes `value` as JSON to `<folder>/<file_name>` atomically.
    pub fn write_json<T: Serialize + ?Sized>(&self, file_name: &str, value: &T) -> Result<PathBuf> {
        let path = self.path.join(file_name);
        write_json_atomic(&path, value)?;
        Ok(path)
    }

    /// Indices of the `frame_NNNNN.png` files present, sorted.
    pub fn existing_frames(&self) -> Result<Vec<usize>> {
        let entries = fs::read_dir(&self.path)
            .map_err(|e| Error::io(format!("could not list {}", self.path.display()), e))?;
        let mut frames: Vec<usize> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| parse_frame_file_name(&e.file_name().to_string_lossy()))
            .collect();
        frames.sort_unstable();
        Ok(frames)
    }

    /// Removes the files of a run in this folder: `is_run_file(name)` says
    /// which besides the frames, the video and its `.part` and the atomic
    /// writers' temporary files. `first` goes first, so that a crash in
    /// between leaves no folder that claims to be resumable (the render
    /// passes `state.json`). Other files (the user's own) and subfolders stay.
    pub fn remove_run_files(&self, first: &str, is_run_file: impl Fn(&str) -> bool) -> Result<()> {
        let remove = |path: &Path| match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(
                format!("could not remove {} of the earlier run", path.display()),
                e,
            )),
        };
        remove(&self.path.join(first))?;
        let video = format!("{}.mp4", self.name);
        let part = format!("{video}.part");
        let entries = fs::read_dir(&self.path)
            .map_err(|e| Error::io(format!("could not list {}", self.path.display()), e))?;
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = parse_frame_file_name(&name).is_some()
                || name == video
                || name == part
                || (name.starts_with('.') && name.contains(".tmp-"))
                || is_run_file(&name);
            if ours && entry.file_type().is_ok_and(|t| t.is_file()) {
                remove(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Removes the folder if nothing is left in it (a failed start's).
    pub fn remove_if_empty(&self) {
        if is_empty_dir(&self.path).unwrap_or(false) {
            let _ = fs::remove_dir(&self.path);
        }
    }
}

fn is_empty_dir(path: &Path) -> Result<bool> {
    let mut entries = fs::read_dir(path)
        .map_err(|e| Error::io(format!("could not list {}", path.display()), e))?;
    Ok(entries.next().is_none())
}

/// A namespace is one plain folder name.
fn check_namespace(ns: &str) -> Result<()> {
    let bad = ns.trim().is_empty()
        || ns == "."
        || ns == ".."
        || ns.contains(['/', '\\', '\0'])
        || ns.trim() != ns;
    if bad {
        return Err(Error::input(format!(
            "file_namespace = \"{ns}\" is not a usable folder name; use a plain name such as \
             \"my_scene\" (no slashes, no leading or trailing spaces)"
        )));
    }
    Ok(())
}
