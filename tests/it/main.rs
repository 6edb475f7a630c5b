//! The integration tests, as one test binary: each file of this folder is a
//! module (run one with `cargo test --test it MODULE::`, e.g.
//! `cargo test --test it step_reference:: -- --nocapture`). One binary links
//! libtorch once instead of once per file. No test here sets process-global
//! state or environment variables of this process (the CLI tests set them on
//! the `zoetrope` child they spawn), so they can share a process; a test that
//! must run alone belongs in a separate file under `tests/` (its own binary).

mod audio;
mod audio_scene;
mod bench_cli;
mod clip_keys;
mod clip_parity;
mod clip_tokenizer;
mod direct_images;
mod grid_browser;
mod grid_cli;
mod grid_judge;
mod grid_render;
mod grid_run;
mod grid_spec;
mod guidance_augment;
mod guidance_cutouts;
mod guidance_loss;
mod loop_render;
mod memory_estimate;
mod palette;
mod plan_cli;
mod presets;
mod prompt_masks;
mod render_e2e;
mod render_step;
mod scene_grammar;
mod score_cli;
mod step_reference;
mod support;
mod tiny_models;
mod tiny_render_step;
mod video_frames;
mod video_mp4;
mod vqgan_keys;
mod vqgan_parity;
mod warp_motion;
mod weights_fetch;
mod weights_full_check;
mod weights_import;
mod weights_manifest;
