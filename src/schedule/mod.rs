//! The scene compiler: scenes → a per-frame, per-step prompt-weight timeline.
