//! Property tests of the readers on hostile input: random bytes and random mutations of valid
//! files never panic, and every refusal names the file (and, for a field problem, the field).
//! The CXI reader, the TOML job reader, the checkpoint reader and the output-folder reader
//! (positions.csv, history.csv, summary.json) are covered. Case counts are small for CI; set
//! `PROPTEST_CASES` to run more (see fuzz/README.md for long runs and the cargo-fuzz targets).

use autopty::engines::checkpoint::{Checkpoint, JointStart};
use autopty::io::container;
use autopty::io::fuzzing::{mutate, read_cxi_bytes, scratch_file, tiny_cxi_bytes};
use autopty::job::Job;
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

fn tiny_cxi() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| tiny_cxi_bytes(scratch()).unwrap())
}

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn check_cxi(bytes: &[u8]) -> Result<(), TestCaseError> {
    let path = scratch_file(scratch(), "fuzz.cxi");
    match read_cxi_bytes(&path, bytes) {
        Ok(data) => {
            data.validate("fuzz")
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        Err(e) => prop_assert!(e.contains("fuzz.cxi"), "error without the file name: {e}"),
    }
    Ok(())
}

#[test]
fn the_unmutated_tiny_cxi_reads() {
    let path = scratch_file(scratch(), "plain.cxi");
    let data = read_cxi_bytes(&path, tiny_cxi()).unwrap();
    assert_eq!(data.intensities.shape(), &[4, 8, 8]);
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn cxi_reader_survives_random_bytes(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..2048),
            // Random bytes behind a real HDF5 signature.
            prop::collection::vec(any::<u8>(), 0..2048).prop_map(|mut v| {
                let mut b = b"\x89HDF\r\n\x1a\n".to_vec();
                b.append(&mut v);
                b
            }),
        ]
    ) {
        check_cxi(&bytes)?;
    }

    #[test]
    fn cxi_reader_survives_mutations(script in prop::collection::vec(any::<u8>(), 0..64)) {
        check_cxi(&mutate(tiny_cxi(), &script))?;
    }

    #[test]
    fn toml_job_reader_survives_random_and_mutated_text(
        text in prop_oneof![
            ".{0,300}",
            // Plausible keys with random values.
            ("(epochs|batch|seed|engine|modes|lr)", "[-0-9a-z.\"{}=, ]{0,20}")
                .prop_map(|(k, v)| format!("[gradient]\n{k} = {v}\n")),
            prop::collection::vec(any::<u8>(), 0..64).prop_map(|script| {
                let base = include_str!("../../../examples/reconstruct.toml");
                String::from_utf8_lossy(&mutate(base.as_bytes(), &script)).into_owned()
            }),
        ]
    ) {
        if let Err(e) = Job::from_toml(&text) {
            prop_assert!(!e.to_string().is_empty());
        }
        let path = scratch_file(scratch(), "job.toml");
        std::fs::write(&path, &text).unwrap();
        if let Err(e) = Job::from_file(&path) {
            prop_assert!(e.to_string().contains("job.toml"), "{e}");
        }
    }

    #[test]
    fn checkpoint_reader_survives_mutations(
        script in prop::collection::vec(any::<u8>(), 0..40),
        reseal in any::<bool>(),
    ) {
        let mut bytes = mutate(valid_checkpoint(), &script);
        if reseal {
            container::reseal(&mut bytes);
        }
        if let Err(e) = autopty::io::checkpoint::decode(Path::new("ck.autopty"), &bytes) {
            prop_assert!(e.to_string().contains("ck.autopty"), "{e}");
        }
    }

    #[test]
    fn output_folder_reader_survives_bad_csv_and_json(
        positions in "[-0-9a-z.,\n ]{0,200}",
        history in "[-0-9e.,\n]{0,200}",
        which in 0..3usize,
    ) {
        let dir = scratch_file(scratch(), "out");
        std::fs::create_dir_all(&dir).unwrap();
        let good = good_outputs();
        for name in ["object.npy", "probe.npy", "positions.csv", "history.csv", "summary.json"] {
            std::fs::copy(good.join(name), dir.join(name)).unwrap();
        }
        let header = "index,row_px,col_px,y_m,x_m,nominal_row_px,nominal_col_px,correction_row_px,correction_col_px\n";
        match which {
            0 => std::fs::write(dir.join("positions.csv"), format!("{header}{positions}")).unwrap(),
            1 => std::fs::write(dir.join("history.csv"), format!("epoch\n{history}")).unwrap(),
            _ => std::fs::write(dir.join("summary.json"), &positions).unwrap(),
        }
        if let Err(e) = autopty::io::outputs::read(&dir) {
            let e = e.to_string();
            prop_assert!(e.contains(&dir.display().to_string()), "{e}");
        }
    }
}

fn valid_checkpoint() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let c = Checkpoint {
            start: Some(JointStart {
                distance: 0.1,
                corrections: Some(ndarray::Array2::zeros((3, 2))),
                probe: Some(ndarray::Array3::from_elem(
                    (1, 4, 4),
                    num_complex::Complex32::new(0.5, -0.25),
                )),
            }),
            joint: None,
        };
        autopty::io::checkpoint::encode(&c, &serde_json::json!({"x": 1})).unwrap()
    })
}

/// A whole output folder of a tiny reconstruction.
fn good_outputs() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let data = autopty::io::fuzzing::tiny_dataset().unwrap();
        let (model, _) =
            autopty::model::Model::initial(&data, &autopty::model::ModelSettings::default())
                .unwrap();
        let rec = autopty::engines::checkpoint::reconstruction_of(
            &model,
            &[],
            serde_json::json!({"optimizer": "adam"}),
        );
        let dir = scratch().join("good");
        autopty::io::outputs::write(&dir, &rec, None, None).unwrap();
        dir
    })
    .clone()
}

/// Writes seed inputs for the cargo-fuzz targets into `$AUTOPTY_FUZZ_SEEDS/<target>/` (by hand:
/// `AUTOPTY_FUZZ_SEEDS=fuzz/corpus cargo test -p autopty --test fuzz_readers -- --ignored`).
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let root = PathBuf::from(std::env::var("AUTOPTY_FUZZ_SEEDS").expect("AUTOPTY_FUZZ_SEEDS"));
    let seed = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    seed("cxi", "tiny.cxi", tiny_cxi());
    seed("checkpoint", "valid", valid_checkpoint());
    // A checkpoint with a joint state: one epoch on the tiny dataset.
    let data = autopty::io::fuzzing::tiny_dataset().unwrap();
    let mut settings = autopty::engines::gradient::GradientSettings {
        epochs: 1,
        ..Default::default()
    };
    settings.positions.enabled = false;
    settings.distance.enabled = false;
    let mut saved = Vec::new();
    let mut save = |c: &Checkpoint, _: &autopty::Reconstruction| {
        saved.push(autopty::io::checkpoint::encode(c, &serde_json::json!({})).unwrap());
        Ok(())
    };
    let mut ck = autopty::engines::checkpoint::Checkpointing::new(0, None, &mut save);
    let mut on_epoch = |_: &autopty::EpochStats| {};
    let control = autopty::engines::Control {
        on_epoch: &mut on_epoch,
        stop: None,
    };
    let model = autopty::model::ModelSettings {
        border: 2,
        ..Default::default()
    };
    autopty::engines::gradient::run_resumable(&data, &model, &settings, control, Some(&mut ck))
        .unwrap();
    seed("checkpoint", "joint", saved.last().unwrap());
    seed(
        "job_toml",
        "example.toml",
        include_bytes!("../../../examples/reconstruct.toml"),
    );
}
