//! `zoetrope score IMAGE… --prompt TEXT…`: CLIP similarity of images to prompts.

use clap::{Args, ValueEnum};
use std::path::PathBuf;
use zoetrope::guidance::score::{score_files, Similarity};
use zoetrope::models::tiny::is_untrained;
use zoetrope::models::weights::{resolve, ModelKind};
use zoetrope::render::device::resolve_device_flag;
use zoetrope::{Error, Result};

/// Arguments of `zoetrope score`.
#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// Images to score (PNG or JPEG).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// Prompts to score against (repeat the flag or list several after it).
    #[arg(long = "prompt", short = 'p', required = true, num_args = 1.., value_name = "TEXT")]
    pub prompts: Vec<String>,
    /// CLIP perceptors: model names (ViT-B/32, RN50, tiny-clip, …) or paths to
    /// .safetensors files, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ViT-B/32",
        value_name = "LIST"
    )]
    pub perceptors: Vec<String>,
    /// Output format: a readable table, or one JSON array of
    /// {image, prompt, perceptor, similarity} objects.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Where to run CLIP: auto (first GPU, else CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// `--format` choices.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

pub fn run(args: &ScoreArgs) -> Result<()> {
    let perceptors: Vec<String> = args
        .perceptors
        .iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    if perceptors.is_empty() {
        return Err(Error::input(
            "--perceptors is empty: name at least one CLIP model (e.g. ViT-B/32)",
        ));
    }
    let device = resolve_device_flag(&args.device)?;
    let rows = score_files(&args.images, &args.prompts, &perceptors, device)?;
    match args.format {
        Format::Json => {
            let text = serde_json::to_string_pretty(&rows)
                .map_err(|e| Error::internal(format!("writing JSON: {e}")))?;
            println!("{text}");
        }
        Format::Table => print_table(&rows, &perceptors),
    }
    Ok(())
}

/// One block per perceptor: a row per image, a column per prompt.
fn print_table(rows: &[Similarity], perceptors: &[String]) {
    println!("CLIP similarity: 100 × cosine of image and prompt embeddings");
    for p in perceptors {
        let block: Vec<&Similarity> = rows.iter().filter(|r| &r.perceptor == p).collect();
        let untrained = resolve(ModelKind::Clip, p).is_ok_and(|path| is_untrained(&path));
        println!();
        println!(
            "perceptor {p}{}",
            if untrained {
                " (untrained: the numbers carry no meaning)"
            } else {
                ""
            }
        );
        let mut prompts: Vec<&str> = Vec::new();
        let mut images: Vec<&str> = Vec::new();
        for r in &block {
            if !prompts.contains(&r.prompt.as_str()) {
                prompts.push(&r.prompt);
            }
            if !images.contains(&r.image.as_str()) {
                images.push(&r.image);
            }
        }
        let iw = images
            .iter()
            .map(|s| s.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        for (i, prompt) in prompts.iter().enumerate() {
            println!("  [{}] {prompt}", i + 1);
        }
        let mut header = format!("  {:<iw$}", "IMAGE");
        for i in 0..prompts.len() {
            header.push_str(&format!(" {:>9}", format!("[{}]", i + 1)));
        }
        println!("{header}");
        for image in &images {
            let mut line = format!("  {image:<iw$}");
            for prompt in &prompts {
                let v = block
                    .iter()
                    .find(|r| r.image == *image && r.prompt == *prompt)
                    .map(|r| r.similarity);
                match v {
                    Some(v) => line.push_str(&format!(" {v:>9.3}")),
                    None => line.push_str(&format!(" {:>9}", "-")),
                }
            }
            println!("{line}");
        }
    }
}
