//! `weights fetch` against a local HTTP server (127.0.0.1, started by each
//! test, serving a fixture with Range support): a full download, resuming a
//! download cut off half-way, servers that ignore Range, checksum mismatches,
//! mirrors, and the CLI with a manifest from ZOETROPE_MANIFEST.

use crate::support::weights_fixture as fixture;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use zoetrope::models::weights::{
    fetch, read_sidecar, sha256_file, FetchOptions, Manifest, ModelKind, ShapeChecks, WeightsStore,
};
use zoetrope::ErrorKind;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Honour Range requests.
    Ranges,
    /// The first response promises the whole file but sends only this many bytes.
    CutFirstAt(usize),
    /// Always answer 200 with the whole file.
    IgnoreRanges,
    /// Answer 200 with the whole file, its length not announced (the body
    /// ends when the connection closes).
    NoLength,
}

struct Server {
    url: String,
    /// The Range header of each request served (None: no Range).
    ranges: Arc<Mutex<Vec<Option<String>>>>,
}

/// Serves `body` at any path until `max_requests` were answered or 30 s passed.
fn serve(body: Vec<u8>, mode: Mode, max_requests: usize) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/tiny.safetensors", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let log = ranges.clone();
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut served = 0;
        while served < max_requests && Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => {
                    let first = served == 0;
                    served += 1;
                    answer(stream, &body, mode, first, &log);
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    Server { url, ranges }
}

/// Answers one request; its Range header is logged before the response is
/// written, so a client that has its answer always finds the request logged.
fn answer(
    stream: TcpStream,
    body: &[u8],
    mode: Mode,
    first: bool,
    log: &Mutex<Vec<Option<String>>>,
) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    log.lock().unwrap().push(range.clone());
    let mut out = stream;
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|_| mode != Mode::IgnoreRanges && mode != Mode::NoLength);
    let len = body.len();
    let (head, data): (String, &[u8]) = match start {
        Some(s) if s >= len => (
            format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            &[],
        ),
        Some(s) => (
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{len}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                len - 1,
                len - s
            ),
            &body[s..],
        ),
        None if mode == Mode::NoLength => (
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string(),
            body,
        ),
        None => (
            format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n"),
            body,
        ),
    };
    let data = match mode {
        Mode::CutFirstAt(n) if first => &data[..n],
        _ => data,
    };
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(data);
    let _ = out.flush();
    let _ = out.shutdown(std::net::Shutdown::Both);
}

fn body() -> Vec<u8> {
    std::fs::read(fixture("tiny_clip_expected.safetensors")).unwrap()
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn manifest_text(url: &str, sha256: Option<&str>, mirrors: &[&str]) -> String {
    let mut t = format!(
        "[[model]]\nkind = \"clip\"\nname = \"Tiny/8\"\nfile = \"clip/Tiny-8.safetensors\"\nformat = \"safetensors\"\nurl = \"{url}\"\n"
    );
    if let Some(s) = sha256 {
        t.push_str(&format!("source_sha256 = \"{s}\"\n"));
    }
    if !mirrors.is_empty() {
        t.push_str(&format!("mirrors = {mirrors:?}\n"));
    }
    t
}

fn store(dir: &Path, url: &str, sha256: Option<&str>, mirrors: &[&str]) -> WeightsStore {
    let manifest = Manifest::parse(&manifest_text(url, sha256, mirrors), "test manifest").unwrap();
    WeightsStore::new(dir.join("weights"), manifest)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn fetches_checks_and_installs() {
    let body = body();
    let server = serve(body.clone(), Mode::Ranges, 1);
    let t = tempfile::tempdir().unwrap();
    let store = store(t.path(), &server.url, Some(&sha(&body)), &[]);
    let r = fetch(
        &store,
        "tiny8",
        &FetchOptions::default(),
        &ShapeChecks::basic(),
    )
    .unwrap();
    let dest = t.path().join("weights/clip/Tiny-8.safetensors");
    assert_eq!(r.path, dest);
    assert!(r.source_verified);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(read_sidecar(&dest).unwrap(), sha256_file(&dest).unwrap());
    let side =
        std::fs::read_to_string(t.path().join("weights/clip/Tiny-8.safetensors.sha256")).unwrap();
    assert!(
        side.contains(&format!("downloaded from {}", server.url)),
        "{side}"
    );
    assert!(side.contains("matches the published checksum"), "{side}");
    assert_eq!(
        listing(&t.path().join("weights/clip")),
        ["Tiny-8.safetensors", "Tiny-8.safetensors.sha256"]
    );
    assert_eq!(*server.ranges.lock().unwrap(), [None]);
    assert_eq!(store.resolve(ModelKind::Clip, "Tiny/8").unwrap(), dest);

    // Present and verified: nothing is downloaded again (the server is gone).
    let again = fetch(
        &store,
        "Tiny/8",
        &FetchOptions::default(),
        &ShapeChecks::basic(),
    )
    .unwrap();
    assert!(again.already_present);

    // A file without a recorded checksum is never replaced unasked.
    std::fs::remove_file(t.path().join("weights/clip/Tiny-8.safetensors.sha256")).unwrap();
    let e = fetch(
        &store,
        "Tiny/8",
        &FetchOptions::default(),
        &ShapeChecks::basic(),
    )
    .unwrap_err();
    assert!(
        e.message.contains("has no recorded checksum") && e.message.contains("--force"),
        "{}",
        e.message
    );
    assert_eq!(std::fs::read(&dest).unwrap(), body);
}

#[test]
fn resumes_a_download_that_was_cut_off() {
    let body = body();
    let cut = body.len() / 2;
    let server = serve(body.clone(), Mode::CutFirstAt(cut), 2);
    let t = tempfile::tempdir().unwrap();
    let store = store(t.path(), &server.url, Some(&sha(&body)), &[]);
    let clip_dir = t.path().join("weights/clip");

    let e = fetch(
        &store,
        "Tiny/8",
        &FetchOptions::default(),
        &ShapeChecks::basic(),
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Weights);
    assert!(e.message.contains("interrupted"), "{}", e.message);
    assert!(
        e.message.contains("run the same command again to resume"),
        "{}",
        e.message
    );
    // Half a download never looks like a model.
    assert_eq!(listing(&clip_dir), ["Tiny-8.source.safetensors.part"]);
    assert_eq!(
        std::fs::metadata(clip_dir.join("Tiny-8.source.safetensors.part"))
            .unwrap()
            .len(),
        cut as u64
    );
    assert!(store.resolve(ModelKind::Clip, "Tiny/8").is_err());

    let r = fetch(
        &store,
        "Tiny/8",
        &FetchOptions::default(),
        &ShapeChecks::basic(),
    )
    .unwrap();
    assert!(r.source_verified);
    assert_eq!(
        std::fs::read(clip_dir.join("Tiny-8.safetensors")).unwrap(),
        body
    );
    assert_eq!(
        listing(&clip_dir),
        ["Tiny-8.safetensors", "Tiny-8.safetensors.sha256"]
    );
    assert_eq!(
        *server.ranges.lock().unwrap(),
        [None, Some(format!("bytes={cut}-"))]
    );
}

#[test]
fn starts_over_when_the_server_ignores_ranges() {
    let body = body();
    let server = serve(body.clone(), Mode::IgnoreRanges, 1);
    let t = tempfile::tempdir().unwrap();
    let store = store(t.path(), &server.url, Some(&sha(&body)), &[]);
    let clip_dir = t.path().join("weights/clip");
    std::fs::create_dir_all(&clip_dir).unwrap();
    // A stale partial download with wrong bytes.
    std::fs::write(
        clip_dir.join("Tiny-8.source.safetensors.part"),
        vec![7u8; 1000],
    )
    .unwrap();
    fetch(
        &store,
        "Tiny/8",
        &FetchOptions::default(),
        &ShapeChecks::basic(),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(clip_dir.join("Tiny-8.safetensors")).unwrap(),
        body
    );
    assert_eq!(
        *server.ranges.lock().unwrap(),
        [Some("bytes=1000-".to_string())]
    );
}

#[test]
fn a_complete_partial_file_is_finished_without_downloading() {
    let body = body();
    let server = serve(body.clone(), Mode::Ranges, 1);
    let t = tempfile::tempdir().unwrap();
    let store = store(t.path(), &server.url, Some(&sha(&body)), &[]);
    let clip_dir = t.path().join("weights/clip");
    std::fs::create_dir_all(&clip_dir).unwrap();
    std::fs::write(clip_dir.join("Tiny-8.source.safetensors.part"), &body).unwrap();
    fetch(
        &store,
        "Tiny/8",
        &FetchOptions::default(),
        &ShapeChecks::basic(),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(clip_dir.join("Tiny-8.safetensors")).unwrap(),
        body
    );
    assert_eq!(
        *server.ranges.lock().unwrap(),
        [Some(format!("bytes={}-", body.len()))]
    );
}

#[test]
fn checksum_mismatch_installs_nothing() {
    let body = body();
    let server = serve(body.clone(), Mode::Ranges, 1);
    let t = tempfile::tempdir().unwrap();
    let wrong = sha(b"something else");
    let store = store(t.path(), &server.url, Some(&wrong), &[]);
    let e = fetch(
        &store,
        "Tiny/8",
        &FetchOptions::default(),
        &ShapeChecks::basic(),
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Weights);
    assert!(
        e.message.contains(&format!("has SHA-256 {}", sha(&body))),
        "{}",
        e.message
    );
    assert!(
        e.message.contains(&format!("but {wrong} was expected")),
        "{}",
        e.message
    );
    assert!(listing(&t.path().join("weights/clip")).is_empty());
}

#[test]
fn falls_back_to_mirrors_and_records_unpublished_checksums() {
    let body = body();
    let server = serve(body.clone(), Mode::Ranges, 1);
    // Nothing listens on a port just released.
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/gone.safetensors", l.local_addr().unwrap())
    };
    let t = tempfile::tempdir().unwrap();
    let store = store(t.path(), &dead, None, &[&server.url]);
    let r = fetch(
        &store,
        "Tiny/8",
        &FetchOptions::default(),
        &ShapeChecks::basic(),
    )
    .unwrap();
    assert!(!r.source_verified);
    assert_eq!(r.url.as_deref(), Some(server.url.as_str()));
    assert_eq!(r.source_sha256.as_deref(), Some(sha(&body).as_str()));
    let side =
        std::fs::read_to_string(t.path().join("weights/clip/Tiny-8.safetensors.sha256")).unwrap();
    assert!(side.contains("no checksum is published"), "{side}");

    // Every source failing: one error naming each.
    let t2 = tempfile::tempdir().unwrap();
    let store = store_with(t2.path(), &dead);
    let e = fetch(
        &store,
        "Tiny/8",
        &FetchOptions::default(),
        &ShapeChecks::basic(),
    )
    .unwrap_err();
    assert!(
        e.message.contains("could not download Tiny/8") && e.message.contains(&dead),
        "{}",
        e.message
    );
}

fn store_with(dir: &Path, url: &str) -> WeightsStore {
    store(dir, url, None, &[])
}

#[test]
fn cli_fetch_with_manifest_override_and_url() {
    let body = body();
    let server = serve(body.clone(), Mode::Ranges, 1);
    let t = tempfile::tempdir().unwrap();
    let manifest = t.path().join("manifest.toml");
    // The manifest's URL is dead; --url points at the server, the checksum stays the manifest's.
    std::fs::write(
        &manifest,
        manifest_text("http://127.0.0.1:9/none", Some(&sha(&body)), &[]),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_zoetrope"))
            .args(args)
            .env("ZOETROPE_WEIGHTS", t.path().join("w"))
            .env("ZOETROPE_MANIFEST", &manifest)
            .output()
            .unwrap()
    };
    let out = run(&["weights", "fetch", "Tiny/8", "--url", &server.url]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("matches the published checksum"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read(t.path().join("w/clip/Tiny-8.safetensors")).unwrap(),
        body
    );

    let out = run(&["weights", "verify", "tiny-8"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let out = run(&["weights", "fetch", "ViT-B/32"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown model \"ViT-B/32\""));
}

/// An OpenAI-style TorchScript download is converted with PyTorch after its
/// checksum passed; `keep_source` keeps the official file beside the model.
#[test]
fn fetches_and_converts_a_torchscript_archive() {
    let archive = std::fs::read(fixture("tiny_clip.pt")).unwrap();
    let server = serve(archive.clone(), Mode::Ranges, 1);
    let t = tempfile::tempdir().unwrap();
    let text = manifest_text(&server.url, Some(&sha(&archive)), &[])
        .replace("\"safetensors\"", "\"torchscript\"");
    let store = WeightsStore::new(
        t.path().join("weights"),
        Manifest::parse(&text, "test").unwrap(),
    );
    let opts = FetchOptions {
        keep_source: true,
        ..Default::default()
    };
    let r = fetch(&store, "Tiny/8", &opts, &ShapeChecks::basic()).unwrap();
    let clip_dir = t.path().join("weights/clip");
    assert_eq!(r.import.as_ref().unwrap().container, "torchscript");
    assert_eq!(
        r.source_kept.as_deref(),
        Some(clip_dir.join("Tiny-8.source.pt").as_path())
    );
    assert_eq!(
        std::fs::read(clip_dir.join("Tiny-8.source.pt")).unwrap(),
        archive
    );
    let got = std::fs::read(clip_dir.join("Tiny-8.safetensors")).unwrap();
    let want = std::fs::read(fixture("tiny_clip_expected.safetensors")).unwrap();
    let (got, want) = (
        safetensors::SafeTensors::deserialize(&got).unwrap(),
        safetensors::SafeTensors::deserialize(&want).unwrap(),
    );
    assert_eq!(got.len(), want.len());
    for (name, w) in want.tensors() {
        assert_eq!(got.tensor(&name).unwrap().data(), w.data(), "{name}");
    }
    assert_eq!(
        listing(&clip_dir),
        [
            "Tiny-8.safetensors",
            "Tiny-8.safetensors.sha256",
            "Tiny-8.source.pt"
        ]
    );
}

/// A manifest entry that also gives the download's exact size.
fn sized_store(dir: &Path, url: &str, sha256: &str, size: usize, mirrors: &[&str]) -> WeightsStore {
    let text = manifest_text(url, Some(sha256), mirrors) + &format!("size = {size}\n");
    WeightsStore::new(
        dir.join("weights"),
        Manifest::parse(&text, "test manifest").unwrap(),
    )
}

/// A URL nothing answers at (a port just released).
fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}/gone.safetensors", l.local_addr().unwrap())
}

#[test]
fn a_mirror_entry_is_used_and_its_size_and_checksum_checked() {
    let body = body();
    let server = serve(body.clone(), Mode::Ranges, 1);
    let dead = dead_url();
    let t = tempfile::tempdir().unwrap();
    let store = sized_store(t.path(), &dead, &sha(&body), body.len(), &[&server.url]);
    let r = fetch(
        &store,
        "Tiny/8",
        &FetchOptions::default(),
        &ShapeChecks::basic(),
    )
    .unwrap();
    assert!(r.source_verified);
    assert_eq!(r.url.as_deref(), Some(server.url.as_str()));
    let dest = t.path().join("weights/clip/Tiny-8.safetensors");
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    let side =
        std::fs::read_to_string(t.path().join("weights/clip/Tiny-8.safetensors.sha256")).unwrap();
    assert!(
        side.contains(&format!("downloaded from {}", server.url)),
        "{side}"
    );
    assert!(side.contains("matches the published checksum"), "{side}");
}

#[test]
fn a_wrong_size_deletes_the_part_file_and_says_so() {
    let body = body();
    // A server that does not announce the length: the size is known only
    // once the whole body is in the part file.
    let server = serve(body.clone(), Mode::NoLength, 1);
    let t = tempfile::tempdir().unwrap();
    let want = body.len() + 1;
    let store = sized_store(t.path(), &server.url, &sha(&body), want, &[]);
    let e = fetch(
        &store,
        "Tiny/8",
        &FetchOptions::default(),
        &ShapeChecks::basic(),
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Weights);
    let part = t.path().join("weights/clip/Tiny-8.source.safetensors.part");
    assert!(
        e.message.contains(&format!(
            "is {} bytes, but {want} bytes were expected",
            body.len()
        )) && e
            .message
            .contains(&format!("{} was deleted", part.display()))
            && e.message.contains("Tiny/8"),
        "{}",
        e.message
    );
    assert!(!part.exists());
    assert!(listing(&t.path().join("weights/clip")).is_empty());
}

/// A source that announces another size than the manifest's serves another
/// file: it is passed over before its body is read, and the mirror is used.
#[test]
fn a_source_announcing_another_size_is_passed_over() {
    let body = body();
    let wrong = serve(b"<html>not the model</html>".to_vec(), Mode::Ranges, 1);
    let good = serve(body.clone(), Mode::Ranges, 1);
    let t = tempfile::tempdir().unwrap();
    let store = sized_store(t.path(), &wrong.url, &sha(&body), body.len(), &[&good.url]);
    let r = fetch(
        &store,
        "Tiny/8",
        &FetchOptions::default(),
        &ShapeChecks::basic(),
    )
    .unwrap();
    assert!(r.source_verified);
    assert_eq!(r.url.as_deref(), Some(good.url.as_str()));
    assert_eq!(
        std::fs::read(t.path().join("weights/clip/Tiny-8.safetensors")).unwrap(),
        body
    );

    // With no other source, the error says which source and both sizes.
    let wrong = serve(b"<html>not the model</html>".to_vec(), Mode::Ranges, 1);
    let t2 = tempfile::tempdir().unwrap();
    let store = sized_store(t2.path(), &wrong.url, &sha(&body), body.len(), &[]);
    let e = fetch(
        &store,
        "Tiny/8",
        &FetchOptions::default(),
        &ShapeChecks::basic(),
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Weights);
    assert!(
        e.message.contains(&format!(
            "{}: it serves 26 bytes, but {} bytes were expected",
            wrong.url,
            body.len()
        )),
        "{}",
        e.message
    );
    assert!(listing(&t2.path().join("weights/clip")).is_empty());
}

/// Through the binary: a size or checksum mismatch exits with the weights
/// errors' code (3) naming the part file, expected and got; nothing is left.
#[test]
fn cli_size_and_checksum_mismatches_delete_the_part_file() {
    let body = body();
    let wrong_sha = sha(b"something else");
    let cases = [
        (
            sha(&body),
            body.len() - 1,
            format!(
                "is {} bytes, but {} bytes were expected",
                body.len(),
                body.len() - 1
            ),
        ),
        (
            wrong_sha.clone(),
            body.len(),
            format!("has SHA-256 {}, but {wrong_sha} was expected", sha(&body)),
        ),
    ];
    for (sum, size, said) in cases {
        let server = serve(body.clone(), Mode::NoLength, 1);
        let t = tempfile::tempdir().unwrap();
        let manifest = t.path().join("manifest.toml");
        let text = manifest_text(&server.url, Some(&sum), &[]) + &format!("size = {size}\n");
        std::fs::write(&manifest, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_zoetrope"))
            .args(["weights", "fetch", "Tiny/8"])
            .env("ZOETROPE_WEIGHTS", t.path().join("w"))
            .env("ZOETROPE_MANIFEST", &manifest)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        let part = t.path().join("w/clip/Tiny-8.source.safetensors.part");
        assert!(
            stderr.contains(&said)
                && stderr.contains(&format!("{} was deleted", part.display()))
                && stderr.contains("nothing was installed"),
            "{stderr}"
        );
        assert!(listing(&t.path().join("w/clip")).is_empty());
    }
}

/// `weights list` says where each model would come from and how big the
/// download is: the test manifest's host, and the built-in mirror.
#[test]
fn list_shows_host_and_download_size() {
    let t = tempfile::tempdir().unwrap();
    let manifest = t.path().join("manifest.toml");
    let text = manifest_text(
        "http://127.0.0.1:9/tiny.safetensors",
        Some(&sha(b"x")),
        &["https://example.org/tiny.safetensors"],
    ) + "size = 353976522\n";
    std::fs::write(&manifest, text).unwrap();
    let list = |manifest: Option<&Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zoetrope"));
        cmd.args(["weights", "list", "--quick"])
            .env("ZOETROPE_WEIGHTS", t.path().join("w"))
            .env_remove("ZOETROPE_MANIFEST");
        if let Some(m) = manifest {
            cmd.env("ZOETROPE_MANIFEST", m);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = list(Some(&manifest));
    assert!(
        text.lines()
            .any(|l| l.starts_with("KIND") && l.contains(" FROM ") && l.contains(" DOWNLOAD ")),
        "{text}"
    );
    let line = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_string()
    };
    let row = line(&text, "Tiny/8");
    assert!(
        row.contains("127.0.0.1 +1 mirror") && row.contains("354.0 MB"),
        "{row}"
    );

    let text = list(None);
    let row = line(&text, "ViT-B/32");
    assert!(
        row.contains("openaipublic.azureedge.net +1 mirror") && row.contains("354.0 MB"),
        "{row}"
    );
    let row = line(&text, "wikiart");
    assert!(
        row.contains("huggingface.co ") && row.contains("1.01 GB"),
        "{row}"
    );
    let row = line(&text, "imagenet_1024");
    assert!(
        row.contains("heibox.uni-heidelberg.de") && row.contains("~958 MB"),
        "{row}"
    );
    let row = line(&text, "tiny-clip");
    assert!(row.contains("(generated)"), "{row}");
}
