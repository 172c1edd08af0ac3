//! Safe interruption, end to end with the built program: runs on the `small` preset are killed
//! (SIGKILL) or interrupted (SIGINT) at random moments; every file left in the output folder is
//! then complete and readable, or absent (after SIGKILL a hidden temporary `.NAME.tmpPID` may
//! remain, never a half-written file under its real name). An interrupted run resumed with
//! `--resume` ends with the same object, bit for bit (one thread), as a run never interrupted.
//! The moments are drawn from a seed printed on failure.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const EPOCHS: &str = "12";

fn autopty() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_autopty"));
    c.env("RAYON_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn reconstruct(data: &Path, out: &Path) -> Command {
    let mut c = autopty();
    c.arg("reconstruct")
        .arg(data)
        .arg("-o")
        .arg(out)
        .args(["--refine", "none", "--epochs", EPOCHS, "--batch", "7"])
        .args(["--checkpoint-every", "2", "-q"]);
    c
}

/// A small deterministic generator (xorshift) for the kill moments.
struct Moments(u64);

impl Moments {
    fn next_ms(&mut self, max: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % max.max(1)
    }
}

fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp")
}

/// Checks that `path` is a whole file of its kind; returns a description of the problem.
fn check_file(path: &Path) -> Result<(), String> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let text = || String::from_utf8(bytes.clone()).map_err(|e| e.to_string());
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "npy" if name.starts_with("object") => autopty::io::npy::read_complex2(path)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        "npy" => autopty::io::npy::read_complex3(path)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        "json" => serde_json::from_str::<serde_json::Value>(&text()?)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        "csv" => {
            let t = text()?;
            let mut lines = t.lines();
            let columns = lines.next().ok_or("empty")?.split(',').count();
            if !t.ends_with('\n') {
                return Err("no final newline".into());
            }
            for l in lines {
                let fields: Vec<&str> = l.split(',').collect();
                if fields.len() != columns || fields.iter().any(|f| f.parse::<f64>().is_err()) {
                    return Err(format!("bad row '{l}'"));
                }
            }
            Ok(())
        }
        "png" => {
            let whole = bytes.starts_with(b"\x89PNG\r\n\x1a\n")
                && bytes.len() > 12
                && &bytes[bytes.len() - 8..bytes.len() - 4] == b"IEND";
            whole.then_some(()).ok_or_else(|| "not a whole PNG".into())
        }
        "html" => text()?
            .trim_end()
            .ends_with("</html>")
            .then_some(())
            .ok_or_else(|| "the HTML does not end".into()),
        "cxi" => {
            let file = hdf5_pure::File::open(path).map_err(|e| e.to_string())?;
            file.dataset("/entry_1/sample_1/geometry_1/translation")
                .map_err(|e| e.to_string())?
                .read_f64()
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        "autopty" => autopty::io::checkpoint::read(path)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        other => Err(format!("unexpected file type '{other}'")),
    }
}

/// Checks every file of `dir`; returns the names of the temporaries left.
fn check_folder(dir: &Path) -> Vec<String> {
    let mut temporaries = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return temporaries; // nothing was written yet
    };
    for e in entries {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if is_temporary(&name) {
            temporaries.push(name);
            continue;
        }
        if let Err(problem) = check_file(&path) {
            panic!("{}: {problem}", path.display());
        }
    }
    temporaries
}

fn wait(child: &mut std::process::Child) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "the run did not end");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("small.cxi");
    let s = autopty()
        .args(["simulate", "--preset", "small", "-o"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(s.success());
    let reference = dir.path().join("reference");
    let t0 = Instant::now();
    let out = reconstruct(&data, &reference).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, data, reference, t0.elapsed())
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1
}

#[test]
fn killed_runs_leave_only_whole_files_and_interrupted_runs_resume_exactly() {
    let (dir, data, reference, duration) = setup();
    let reference_object = std::fs::read(reference.join("object.npy")).unwrap();
    let seed = seed();
    eprintln!("seed {seed}, reference run {duration:?}");
    let mut moments = Moments(seed);
    let span = duration.as_millis() as u64;
    for round in 0..3 {
        // SIGKILL: no chance to clean up.
        let out = dir.path().join(format!("killed_{round}"));
        let mut child = reconstruct(&data, &out).spawn().unwrap();
        let ms = moments.next_ms(span);
        std::thread::sleep(Duration::from_millis(ms));
        child.kill().unwrap();
        wait(&mut child);
        let left = check_folder(&out);
        eprintln!("SIGKILL round {round} after {ms} ms: temporaries left {left:?}");
        // A checkpoint left by a killed run resumes to the same end.
        if out.join("checkpoint.autopty").exists() {
            let s = autopty()
                .args(["reconstruct", "-q", "--resume"])
                .arg(&out)
                .status()
                .unwrap();
            assert!(s.success(), "resume after SIGKILL (seed {seed})");
            assert!(
                std::fs::read(out.join("object.npy")).unwrap() == reference_object,
                "object after SIGKILL and resume differs (seed {seed})"
            );
        }

        // SIGINT: finish the minibatch, write everything, exit 130.
        let out = dir.path().join(format!("interrupted_{round}"));
        let mut child = reconstruct(&data, &out).spawn().unwrap();
        let ms = moments.next_ms(span);
        std::thread::sleep(Duration::from_millis(ms));
        let sent = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = wait(&mut child);
        let mut stderr = String::new();
        use std::io::Read;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        eprintln!("SIGINT round {round} after {ms} ms: {status:?}");
        let left = check_folder(&out);
        match status.code() {
            Some(130) => {
                assert!(left.is_empty(), "temporaries after SIGINT: {left:?}");
                assert!(stderr.contains("--resume"), "{stderr}");
            }
            Some(0) => assert!(left.is_empty()), // the run ended before the signal
            other => {
                // The signal came before the handler was installed: like a kill.
                assert!(other.is_none(), "exit {other:?}: {stderr}");
                continue;
            }
        }
        let s = autopty()
            .args(["reconstruct", "-q", "--resume"])
            .arg(&out)
            .status()
            .unwrap();
        assert!(s.success(), "resume after SIGINT (seed {seed})");
        assert!(
            check_folder(&out).is_empty(),
            "temporaries after the resumed run"
        );
        assert!(
            std::fs::read(out.join("object.npy")).unwrap() == reference_object,
            "object after SIGINT and resume differs from the uninterrupted run (seed {seed})"
        );
    }
}

#[test]
fn resume_names_a_missing_checkpoint_and_logs_changed_settings() {
    let (dir, _data, reference, _) = setup();
    let out = autopty()
        .args(["reconstruct", "--resume"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("checkpoint.autopty"), "{e}");
    // Resume the finished reference for 4 more epochs with positions refined.
    let out = autopty()
        .args(["reconstruct", "--resume"])
        .arg(&reference)
        .args(["--epochs", "16", "--refine", "positions", "--json"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let epochs: Vec<u64> = lines
        .iter()
        .filter(|l| l["event"] == "epoch")
        .map(|l| l["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(epochs, vec![13, 14, 15, 16]);
    assert_eq!(lines.last().unwrap()["event"], "finished");
    let report = std::fs::read_to_string(reference.join("report.html")).unwrap();
    assert!(
        report.contains("gradient.positions.enabled: false -&gt; true"),
        "the report's notes do not list the change"
    );
    let history = std::fs::read_to_string(reference.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 1 + 16);
}
