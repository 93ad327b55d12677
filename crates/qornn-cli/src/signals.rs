//! SIGTERM and SIGINT (a batch system's warning, Ctrl-C) as a flag: the run in progress
//! checkpoints where it stands and stops; the same command resumes it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Exit status of a run stopped by a signal after checkpointing (BSD's EX_TEMPFAIL: "try
/// again later").
pub const EXIT_INTERRUPTED: u8 = 75;

/// The flag set by SIGTERM or SIGINT (handlers installed on first use).
pub fn stop_requested() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            // Registration fails only for signals that cannot be caught, which these can.
            signal_hook::flag::register(signal, Arc::clone(&flag))
                .expect("SIGTERM and SIGINT can be caught");
        }
        flag
    })
    .clone()
}

pub fn is_set(flag: &AtomicBool) -> bool {
    flag.load(Ordering::Relaxed)
}

/// Sends SIGTERM to a child (a run, which then checkpoints and stops).
pub fn terminate(child: &std::process::Child) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers; a child that has exited makes it fail
    // harmlessly with ESRCH.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}
