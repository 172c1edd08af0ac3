//! The checkpoint reader on arbitrary bytes, resealed half of the time so that the parser
//! behind the checksum is reached: never panics; a refusal names the file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    if bytes.first().is_some_and(|b| b & 1 == 1) {
        autopty::io::container::reseal(&mut bytes);
    }
    if let Err(e) = autopty::io::checkpoint::decode(Path::new("fuzz.autopty"), &bytes) {
        assert!(e.to_string().contains("fuzz.autopty"), "{e}");
    }
});
