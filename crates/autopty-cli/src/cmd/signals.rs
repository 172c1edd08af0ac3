//! Ctrl-C (SIGINT), SIGTERM and SIGHUP: the first asks the running engine to stop after its
//! current minibatch (it then writes its state and outputs); a second one quits at once (files
//! are written atomically, so what is on disk stays whole).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

static STOP: AtomicBool = AtomicBool::new(false);
static SIGNALS: AtomicUsize = AtomicUsize::new(0);
static INSTALL: Once = Once::new();

/// Exit status of a run ended by a signal (128 + SIGINT).
pub const INTERRUPTED_EXIT: i32 = 130;

/// Installs the handler (once) and returns the stop flag the engines watch.
pub fn stop_flag() -> &'static AtomicBool {
    INSTALL.call_once(|| {
        let installed = ctrlc::set_handler(|| {
            if SIGNALS.fetch_add(1, Ordering::SeqCst) == 0 {
                STOP.store(true, Ordering::SeqCst);
                eprintln!(
                    "\ninterrupt: stopping after the current minibatch and writing the state \
                     (interrupt again to quit at once)"
                );
            } else {
                eprintln!("\ninterrupt: quitting now");
                std::process::exit(INTERRUPTED_EXIT);
            }
        });
        if let Err(e) = installed {
            tracing::warn!("cannot catch Ctrl-C: {e}");
        }
    });
    &STOP
}

/// True when a signal asked the program to stop.
pub fn signalled() -> bool {
    SIGNALS.load(Ordering::SeqCst) > 0
}

/// Clears a stop that was not asked for by a signal (a time budget), before the next run.
pub fn clear_unless_signalled() {
    if !signalled() {
        STOP.store(false, Ordering::SeqCst);
    }
}
