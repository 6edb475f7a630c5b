//! Any text as scenes/prefix/suffix, as an expression and as a weight
//! string: parse or fail cleanly, and evaluate without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zoetrope_fuzz::scene::prompt::{parse_scenes, WeightSpec};
use zoetrope_fuzz::scene::Param;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // split the input into scenes, prefix and suffix on two NUL bytes
    let mut parts = text.splitn(3, '\0');
    let scenes = parts.next().unwrap_or("");
    let prefix = parts.next().unwrap_or("");
    let suffix = parts.next().unwrap_or("");
    if let Ok(s) = parse_scenes(scenes, prefix, suffix) {
        assert!(!s.is_empty());
        for p in s.iter().flatten() {
            let _ = p.weight.eval(1.5, 3.0);
            let _ = p.stop_at(1.5, 3.0);
        }
    }
    for t in [0.0, 0.5, 1e9, -1.0, f64::NAN] {
        if let Ok(p) = Param::parse(text) {
            let _ = p.eval(t, t);
        }
        if let Ok(w) = WeightSpec::parse(text) {
            let _ = w.weight.eval(t, t);
            let _ = w.stop_at(t, t);
        }
    }
});
