//! The TOML job reader on arbitrary text: never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(job) = autopty::job::Job::from_toml(text) {
            job.validate().expect("a job the reader accepts is valid");
        }
    }
});
