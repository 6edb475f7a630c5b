//! The phase profiler of `zoetrope bench --breakdown`: where the time of a
//! step goes ([`crate::guidance::guide::Guide::step_profiled`]).

use std::time::Instant;

use tch::Device;

/// Where the time of steps goes, for `zoetrope bench --breakdown`: the
/// device is synchronised at every phase boundary, so the phases add up to a
/// little more than an unprofiled step (which never waits on the device).
#[derive(Debug, Default)]
pub struct PhaseTimes {
    last: Option<Instant>,
    /// `(phase, seconds)` summed over every profiled step, in step order.
    pub totals: Vec<(&'static str, f64)>,
}

impl PhaseTimes {
    /// Waits for the device, then charges the time since the previous mark
    /// to `phase` (the first mark of a step only starts the clock).
    fn mark(&mut self, device: Device, phase: Option<&'static str>) {
        crate::gpu::synchronize(device);
        let now = Instant::now();
        if let (Some(phase), Some(last)) = (phase, self.last) {
            let dt = (now - last).as_secs_f64();
            match self.totals.iter_mut().find(|(p, _)| *p == phase) {
                Some((_, t)) => *t += dt,
                None => self.totals.push((phase, dt)),
            }
        }
        self.last = Some(now);
    }
}

/// Marks a phase boundary when profiling.
pub(crate) fn mark(
    phases: &mut Option<&mut PhaseTimes>,
    device: Device,
    phase: Option<&'static str>,
) {
    if let Some(p) = phases.as_deref_mut() {
        p.mark(device, phase);
    }
}
