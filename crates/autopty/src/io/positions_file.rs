//! Scan positions from a text file: CSV or whitespace-separated columns, one line per frame.
//!
//! Lines that are empty or start with `#` are skipped, and so is a first line that is not all
//! numbers (a header). Columns are separated by commas, semicolons, tabs or spaces. The settings
//! name the columns (0-based) that hold x and y, their unit (m, mm, um or nm) and whether to
//! negate either axis. The values, after the unit and the sign, are the probe's position over
//! the sample, (y, x) with y along the object's rows, as in [`crate::Dataset`]; for stage
//! positions (the sample moves, the beam stays) negate both axes.

use crate::error::{Error, Result};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Length unit of a positions file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LengthUnit {
    /// Metres.
    M,
    /// Millimetres.
    Mm,
    /// Micrometres.
    #[default]
    Um,
    /// Nanometres.
    Nm,
}

impl LengthUnit {
    /// Metres per unit.
    pub fn metres(self) -> f64 {
        match self {
            LengthUnit::M => 1.0,
            LengthUnit::Mm => 1e-3,
            LengthUnit::Um => 1e-6,
            LengthUnit::Nm => 1e-9,
        }
    }
}

impl std::str::FromStr for LengthUnit {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "m" => Ok(LengthUnit::M),
            "mm" => Ok(LengthUnit::Mm),
            "um" | "µm" | "micron" => Ok(LengthUnit::Um),
            "nm" => Ok(LengthUnit::Nm),
            other => Err(Error::invalid(
                "length unit",
                format!("unknown unit '{other}'; expected m, mm, um or nm"),
            )),
        }
    }
}

/// Where the positions are and how to read them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PositionsFile {
    /// The text file (relative paths are relative to the job file's folder).
    pub file: PathBuf,
    /// Unit of the values.
    pub unit: LengthUnit,
    /// Column (0-based) of x (along the object's columns).
    pub x_column: usize,
    /// Column (0-based) of y (along the object's rows).
    pub y_column: usize,
    /// Negate x.
    pub flip_x: bool,
    /// Negate y.
    pub flip_y: bool,
}

impl Default for PositionsFile {
    fn default() -> Self {
        PositionsFile {
            file: PathBuf::new(),
            unit: LengthUnit::Um,
            x_column: 0,
            y_column: 1,
            flip_x: false,
            flip_y: false,
        }
    }
}

/// Splits a line into its fields.
fn fields(line: &str) -> Vec<&str> {
    line.split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .filter(|f| !f.is_empty())
        .collect()
}

/// Reads the positions (J, 2) as (y, x) metres. Errors name the file, the line and the problem.
pub fn read(settings: &PositionsFile) -> Result<Array2<f64>> {
    let path = &settings.file;
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let needed = settings.x_column.max(settings.y_column) + 1;
    if settings.x_column == settings.y_column {
        return Err(Error::field(
            path,
            "columns",
            format!(
                "x and y are both read from column {}; expected two different columns",
                settings.x_column
            ),
        ));
    }
    let scale = settings.unit.metres();
    let mut rows: Vec<[f64; 2]> = Vec::new();
    let mut first_data_line = true;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let parts = fields(trimmed);
        let numbers: Vec<Option<f64>> = parts.iter().map(|p| p.parse::<f64>().ok()).collect();
        if first_data_line && numbers.iter().any(Option::is_none) {
            // A header line.
            first_data_line = false;
            continue;
        }
        first_data_line = false;
        let at = |what: &str| Error::field(path, format!("line {}", i + 1), what.to_string());
        if parts.len() < needed {
            return Err(at(&format!(
                "expected at least {needed} columns (x in column {}, y in column {}), found {}: '{trimmed}'",
                settings.x_column,
                settings.y_column,
                parts.len()
            )));
        }
        let value = |col: usize| -> Result<f64> {
            match numbers[col] {
                Some(v) if v.is_finite() => Ok(v),
                _ => Err(at(&format!(
                    "expected a finite number in column {col}, found '{}'",
                    parts[col]
                ))),
            }
        };
        let x = value(settings.x_column)? * scale;
        let y = value(settings.y_column)? * scale;
        let sx = if settings.flip_x { -1.0 } else { 1.0 };
        let sy = if settings.flip_y { -1.0 } else { 1.0 };
        rows.push([sy * y, sx * x]);
    }
    if rows.is_empty() {
        return Err(Error::field(
            path,
            "positions",
            "expected one line of numbers per frame, found none",
        ));
    }
    Ok(Array2::from_shape_fn((rows.len(), 2), |(j, k)| rows[j][k]))
}

/// Writes positions (J, 2) as (y, x) metres into a CSV text with a header `x_um,y_um`
/// (micrometres), the default layout of [`PositionsFile`].
pub fn to_csv_um(positions: &Array2<f64>) -> String {
    use std::fmt::Write as _;
    let mut s = String::from("x_um,y_um\n");
    for p in positions.outer_iter() {
        let _ = writeln!(s, "{:.6},{:.6}", p[1] * 1e6, p[0] * 1e6);
    }
    s
}

/// Resolves a relative path against `base` (the folder of the file that named it).
pub fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() || path.as_os_str().is_empty() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(file: PathBuf) -> PositionsFile {
        PositionsFile {
            file,
            ..Default::default()
        }
    }

    #[test]
    fn reads_csv_and_whitespace_with_units_columns_and_signs() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("p.csv");
        std::fs::write(&csv, "# scan 12\nx_um, y_um\n1.5, -2\n\n3,4\n").unwrap();
        let p = read(&settings(csv)).unwrap();
        assert_eq!(p.shape(), &[2, 2]);
        assert!((p[[0, 0]] + 2e-6).abs() < 1e-18 && (p[[0, 1]] - 1.5e-6).abs() < 1e-18);
        let txt = dir.path().join("p.txt");
        std::fs::write(&txt, "0 10 20\n1\t30\t40\n").unwrap();
        let p = read(&PositionsFile {
            file: txt,
            unit: LengthUnit::Nm,
            x_column: 2,
            y_column: 1,
            flip_x: true,
            flip_y: false,
        })
        .unwrap();
        assert!((p[[1, 0]] - 30e-9).abs() < 1e-20 && (p[[1, 1]] + 40e-9).abs() < 1e-20);
        assert_eq!("mm".parse::<LengthUnit>().unwrap(), LengthUnit::Mm);
        assert!("inch".parse::<LengthUnit>().is_err());
    }

    #[test]
    fn bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bad.csv");
        std::fs::write(&f, "1,2\n3,nan\n").unwrap();
        let e = read(&settings(f.clone())).unwrap_err().to_string();
        assert!(e.contains("bad.csv") && e.contains("line 2"), "{e}");
        std::fs::write(&f, "1,2\n3\n").unwrap();
        let e = read(&settings(f.clone())).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("columns"), "{e}");
        std::fs::write(&f, "# nothing\n").unwrap();
        let e = read(&settings(f)).unwrap_err().to_string();
        assert!(e.contains("none"), "{e}");
    }
}
