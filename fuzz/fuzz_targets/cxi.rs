//! The CXI reader on raw bytes: never panics; a refusal names the file.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = autopty::io::fuzzing::scratch_file(&std::env::temp_dir(), "fuzz-cxi");
    if let Err(e) = autopty::io::fuzzing::read_cxi_bytes(&path, data) {
        assert!(e.contains("fuzz-cxi"), "{e}");
    }
});
