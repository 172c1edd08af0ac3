//! The CXI reader on mutations of a tiny valid file (the input is an edit script, see
//! `autopty::io::fuzzing::mutate`): reaches the fields behind a valid HDF5 structure.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn base() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        autopty::io::fuzzing::tiny_cxi_bytes(&std::env::temp_dir()).expect("tiny CXI")
    })
}

fuzz_target!(|script: &[u8]| {
    let bytes = autopty::io::fuzzing::mutate(base(), script);
    let path = autopty::io::fuzzing::scratch_file(&std::env::temp_dir(), "fuzz-cxi-mutate");
    match autopty::io::fuzzing::read_cxi_bytes(&path, &bytes) {
        Ok(data) => data
            .validate("fuzz")
            .expect("a dataset the reader accepts is valid"),
        Err(e) => assert!(e.contains("fuzz-cxi-mutate"), "{e}"),
    }
});
