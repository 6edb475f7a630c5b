//! `zoetrope convert FILE.yaml [-o OUT.toml]`: a pytti YAML preset as a
//! TOML scene with every value explicit (docs/scene-format.md, "pytti
//! presets").

use clap::Args;
use std::path::{Path, PathBuf};
use zoetrope::scene::preset::{self, pytti::PYTTI_VERSION};
use zoetrope::scene::Scene;
use zoetrope::{Error, Result};

/// Arguments of `zoetrope convert`.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The pytti preset (.yaml or .yml).
    pub preset: PathBuf,
    /// The TOML scene to write (default: the preset's name with .toml).
    #[arg(short, long, value_name = "OUT.toml")]
    pub out: Option<PathBuf>,
    /// Replace OUT.toml when it exists.
    #[arg(long)]
    pub force: bool,
}

/// Runs the command: loads the preset as `plan` and `render` do and writes
/// its resolved settings, which load back to the same scene.
pub fn run(args: &ConvertArgs) -> Result<()> {
    if !preset::is_preset_path(&args.preset) {
        return Err(Error::input(format!(
            "{}: convert reads a pytti preset, a file ending in .yaml or .yml",
            args.preset.display()
        )));
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.preset.with_extension("toml"));
    if out.exists() && !args.force {
        return Err(Error::input(format!(
            "{} exists; pass --force to replace it, or choose another file with -o",
            out.display()
        )));
    }
    let scene = Scene::load_with(&args.preset, &zoetrope::models::WeightsLookup)?;
    for w in &scene.warnings {
        eprintln!("warning: {w}");
    }
    let text = scene_text(&scene, &args.preset)?;
    zoetrope::atomic::write_atomic(&out, text.as_bytes())?;
    println!("wrote {}", out.display());
    Ok(())
}

/// The TOML scene: a header saying where it came from, the preset's notes
/// as comments, then every setting. pytti's `${now:%f}` seed (a new seed
/// each run) stays a new seed each run: no `seed` line.
fn scene_text(scene: &Scene, preset: &Path) -> Result<String> {
    let name = preset
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut text = format!(
        "# Converted by `zoetrope convert` from the pytti preset {name}: the keys it leaves\n\
         # out have {PYTTI_VERSION}'s defaults, and scenes cross-fade as in pytti.\n"
    );
    for w in &scene.warnings {
        text.push_str(&format!("# note: {}\n", w.replace('\n', " ")));
    }
    if scene.seed_was_random {
        text.push_str("# seed: none given (pytti's ${now:%f}): a new seed is drawn each run\n");
    }
    text.push('\n');
    for line in scene.to_toml()?.lines() {
        if scene.seed_was_random && line.starts_with("seed = ") {
            continue;
        }
        text.push_str(line);
        text.push('\n');
    }
    Ok(text)
}
