//! Progress reporting of a render: bars on a terminal, one line per frame
//! otherwise, or nothing.

use std::io::IsTerminal;

use crate::render::frameloop::Progress;

/// Progress display: bars on a terminal, lines otherwise.
pub(crate) struct Reporter {
    mode: Progress,
    frames: Option<indicatif::ProgressBar>,
    steps: Option<indicatif::ProgressBar>,
    _multi: Option<indicatif::MultiProgress>,
}

impl Reporter {
    pub(crate) fn new(
        mode: Progress,
        total_frames: u64,
        done: u64,
        steps_per_frame: u64,
    ) -> Reporter {
        let mode = match mode {
            Progress::Auto if std::io::stderr().is_terminal() => Progress::Auto,
            Progress::Auto => Progress::Lines,
            m => m,
        };
        if mode != Progress::Auto {
            return Reporter {
                mode,
                frames: None,
                steps: None,
                _multi: None,
            };
        }
        let multi = indicatif::MultiProgress::new();
        let frames = multi.add(indicatif::ProgressBar::new(total_frames));
        frames.set_style(
            indicatif::ProgressStyle::with_template(
                "frames {pos}/{len} [{wide_bar}] {elapsed_precise} eta {eta_precise}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        frames.set_position(done);
        let steps = multi.add(indicatif::ProgressBar::new(steps_per_frame));
        steps.set_style(
            indicatif::ProgressStyle::with_template(
                "frame {prefix} steps {pos}/{len} [{bar:30}] {per_sec} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Reporter {
            mode,
            frames: Some(frames),
            steps: Some(steps),
            _multi: Some(multi),
        }
    }

    /// Whether progress shows as bars (a terminal in the automatic mode).
    pub(crate) fn shows_bars(&self) -> bool {
        self.mode == Progress::Auto
    }

    pub(crate) fn start_frame(&self, k: u64) {
        if let Some(s) = &self.steps {
            s.set_prefix(k.to_string());
            s.set_position(0);
        }
    }

    pub(crate) fn step(&self, loss: Option<f64>) {
        if let Some(s) = &self.steps {
            s.inc(1);
            if let Some(l) = loss {
                s.set_message(format!("loss {l:.4}"));
            }
        }
    }

    pub(crate) fn frame_done(&self, k: u64, total: u64, loss: f64, secs: f64, steps: u64) {
        match self.mode {
            Progress::Auto => {
                if let Some(f) = &self.frames {
                    f.set_position(k);
                }
            }
            Progress::Lines => eprintln!(
                "frame {k}/{total}: loss {loss:.4}, {secs:.1}s ({:.2} steps/s)",
                steps as f64 / secs.max(1e-9)
            ),
            Progress::Quiet => {}
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(s) = &self.steps {
            s.finish_and_clear();
        }
        if let Some(f) = &self.frames {
            f.finish();
        }
    }
}
