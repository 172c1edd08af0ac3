//! The checkpoint file (`checkpoint.autopty` in an output folder): a [`Checkpoint`] in the
//! [`container`](crate::io::container) format, with a caller's `meta` (the command line records
//! its input and job there). Written atomically; read back exactly (floats bit for bit).

use crate::engines::checkpoint::{Checkpoint, JointStart, JointState, Parameters};
use crate::engines::gradient::GradientSettings;
use crate::error::{Error, Result};
use crate::io::atomic::write_bytes_atomic;
use crate::io::container::{self, NamedArray, Values};
use crate::optim::{OptimizerKind, OptimizerState};
use crate::reconstruction::EpochStats;
use ndarray::{Array2, Array3};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Name of the checkpoint file in an output folder.
pub const FILE_NAME: &str = "checkpoint.autopty";

const FORMAT: u32 = 1;
const OPTIMIZERS: [&str; 4] = ["object", "probe", "positions", "distance"];

/// The scalar part of a checkpoint (the JSON header).
/// Floats that steer the computation are stored as their bits (JSON text need not round-trip
/// the last bit).
#[derive(Serialize, Deserialize)]
struct Scalars {
    format: u32,
    start_distance: Option<u64>,
    has_start_corrections: bool,
    /// Absent in checkpoints written before the joint run could start from a given probe.
    #[serde(default)]
    has_start_probe: bool,
    joint: Option<JointScalars>,
    meta: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
struct JointScalars {
    epoch: usize,
    done: usize,
    shuffled: bool,
    partial_loss: u64,
    distance: u64,
    last_good_distance: Option<u64>,
    optimizer: OptimizerKind,
    steps: [u32; 4],
    /// Each optimiser's largest second moments (bits), the scale of Adam's relative floor.
    v_max: [[u64; 2]; 4],
    u: u64,
    /// The generator as JSON text (its 128-bit words do not fit a JSON value's numbers).
    rng: String,
    first_loss: Option<u64>,
    seconds: u64,
    settings: GradientSettings,
}

fn arr(name: &str, shape: &[usize], values: Values) -> NamedArray {
    NamedArray {
        name: name.into(),
        shape: shape.to_vec(),
        values,
    }
}

fn params_arrays(prefix: &str, p: &Parameters, out: &mut Vec<NamedArray>) {
    out.push(arr(
        &format!("{prefix}object"),
        p.object.shape(),
        Values::C64(p.object.iter().copied().collect()),
    ));
    out.push(arr(
        &format!("{prefix}probe"),
        p.probe.shape(),
        Values::C64(p.probe.iter().copied().collect()),
    ));
    out.push(arr(
        &format!("{prefix}corrections"),
        p.corrections.shape(),
        Values::F64(p.corrections.iter().copied().collect()),
    ));
}

/// Encodes a checkpoint with `meta` into bytes.
pub fn encode(checkpoint: &Checkpoint, meta: &serde_json::Value) -> Result<Vec<u8>> {
    let mut arrays = Vec::new();
    if let Some(c) = checkpoint
        .start
        .as_ref()
        .and_then(|s| s.corrections.as_ref())
    {
        arrays.push(arr(
            "start_corrections",
            c.shape(),
            Values::F64(c.iter().copied().collect()),
        ));
    }
    if let Some(p) = checkpoint.start.as_ref().and_then(|s| s.probe.as_ref()) {
        arrays.push(arr(
            "start_probe",
            p.shape(),
            Values::C64(p.iter().copied().collect()),
        ));
    }
    let joint = checkpoint.joint.as_ref().map(|j| {
        params_arrays("", &j.params, &mut arrays);
        if let Some(p) = &j.last_good {
            params_arrays("last_good_", p, &mut arrays);
        }
        for (name, o) in OPTIMIZERS.iter().zip(&j.optimizers) {
            arrays.push(arr(
                &format!("{name}_m"),
                &[o.m.len()],
                Values::F64(o.m.clone()),
            ));
            arrays.push(arr(
                &format!("{name}_v"),
                &[o.v.len()],
                Values::F64(o.v.clone()),
            ));
            arrays.push(arr(
                &format!("{name}_t"),
                &[o.t.len()],
                Values::U32(o.t.clone()),
            ));
        }
        // epoch, loss, distance, median correction, seconds: one row per epoch.
        arrays.push(arr(
            "history",
            &[j.history.len(), 5],
            Values::F64(
                j.history
                    .iter()
                    .flat_map(|h| {
                        [
                            h.epoch as f64,
                            h.loss,
                            h.distance,
                            h.median_correction,
                            h.seconds,
                        ]
                    })
                    .collect(),
            ),
        ));
        arrays.push(arr(
            "order",
            &[j.order.len()],
            Values::U64(j.order.iter().map(|&k| k as u64).collect()),
        ));
        JointScalars {
            epoch: j.epoch,
            done: j.done,
            shuffled: j.shuffled,
            partial_loss: j.partial_loss.to_bits(),
            distance: j.params.distance.to_bits(),
            last_good_distance: j.last_good.as_ref().map(|p| p.distance.to_bits()),
            optimizer: j.optimizers[0].kind,
            steps: [0, 1, 2, 3].map(|k| j.optimizers[k].steps),
            v_max: [0, 1, 2, 3].map(|k| j.optimizers[k].v_max.map(f64::to_bits)),
            u: j.u.to_bits(),
            rng: serde_json::to_string(&j.rng).unwrap_or_default(),
            first_loss: j.first_loss.map(f64::to_bits),
            seconds: j.seconds.to_bits(),
            settings: j.settings.clone(),
        }
    });
    let scalars = Scalars {
        format: FORMAT,
        start_distance: checkpoint.start.as_ref().map(|s| s.distance.to_bits()),
        has_start_corrections: checkpoint
            .start
            .as_ref()
            .is_some_and(|s| s.corrections.is_some()),
        has_start_probe: checkpoint.start.as_ref().is_some_and(|s| s.probe.is_some()),
        joint,
        meta: meta.clone(),
    };
    let header = serde_json::to_value(&scalars)
        .map_err(|e| Error::invalid("checkpoint header", e.to_string()))?;
    container::encode(&header, &arrays)
}

/// Writes a checkpoint with `meta` to `path` atomically.
pub fn write(path: &Path, checkpoint: &Checkpoint, meta: &serde_json::Value) -> Result<()> {
    write_bytes_atomic(path, &encode(checkpoint, meta)?)
}

/// Reads a checkpoint and its `meta` from `path`.
pub fn read(path: &Path) -> Result<(Checkpoint, serde_json::Value)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode(path, &bytes)
}

/// The arrays of a container by name, taken out with checked shapes and types.
struct Arrays<'p> {
    path: &'p Path,
    arrays: Vec<NamedArray>,
}

impl Arrays<'_> {
    fn take(&mut self, name: &str, ndim: usize) -> Result<(Vec<usize>, Values)> {
        let k = self
            .arrays
            .iter()
            .position(|a| a.name == name)
            .ok_or_else(|| Error::field(self.path, name, "expected this array, it is missing"))?;
        let a = self.arrays.swap_remove(k);
        if a.shape.len() != ndim {
            return Err(Error::field(
                self.path,
                name,
                format!("expected {ndim} dimensions, found shape {:?}", a.shape),
            ));
        }
        Ok((a.shape, a.values))
    }

    fn wrong(&self, name: &str, want: &str) -> Error {
        Error::field(self.path, name, format!("expected {want} values"))
    }

    fn c64_2(&mut self, name: &str) -> Result<Array2<num_complex::Complex32>> {
        match self.take(name, 2)? {
            (s, Values::C64(v)) => Ok(Array2::from_shape_vec((s[0], s[1]), v)
                .map_err(|_| self.wrong(name, "a whole 2-D array of"))?),
            _ => Err(self.wrong(name, "complex64")),
        }
    }

    fn c64_3(&mut self, name: &str) -> Result<Array3<num_complex::Complex32>> {
        match self.take(name, 3)? {
            (s, Values::C64(v)) => Ok(Array3::from_shape_vec((s[0], s[1], s[2]), v)
                .map_err(|_| self.wrong(name, "a whole 3-D array of"))?),
            _ => Err(self.wrong(name, "complex64")),
        }
    }

    fn f64_2(&mut self, name: &str) -> Result<Array2<f64>> {
        match self.take(name, 2)? {
            (s, Values::F64(v)) if s[1] == 2 => Ok(Array2::from_shape_vec((s[0], 2), v)
                .map_err(|_| self.wrong(name, "a whole J x 2 array of"))?),
            _ => Err(self.wrong(name, "J x 2 float64")),
        }
    }

    fn f64_1(&mut self, name: &str) -> Result<Vec<f64>> {
        match self.take(name, 1)? {
            (_, Values::F64(v)) => Ok(v),
            _ => Err(self.wrong(name, "float64")),
        }
    }

    fn u32_1(&mut self, name: &str) -> Result<Vec<u32>> {
        match self.take(name, 1)? {
            (_, Values::U32(v)) => Ok(v),
            _ => Err(self.wrong(name, "uint32")),
        }
    }

    fn params(&mut self, prefix: &str, distance: f64) -> Result<Parameters> {
        Ok(Parameters {
            object: self.c64_2(&format!("{prefix}object"))?,
            probe: self.c64_3(&format!("{prefix}probe"))?,
            corrections: self.f64_2(&format!("{prefix}corrections"))?,
            distance,
        })
    }
}

/// Decodes a checkpoint read from `path` (named in errors).
pub fn decode(path: &Path, bytes: &[u8]) -> Result<(Checkpoint, serde_json::Value)> {
    let (header, arrays) = container::decode(path, bytes)?;
    let scalars: Scalars = serde_json::from_value(header).map_err(|e| {
        Error::field(
            path,
            "header",
            format!("expected autopty's checkpoint fields: {e}"),
        )
    })?;
    if scalars.format != FORMAT {
        return Err(Error::field(
            path,
            "format",
            format!(
                "expected checkpoint format {FORMAT}, found {}",
                scalars.format
            ),
        ));
    }
    let mut a = Arrays { path, arrays };
    let start = match scalars.start_distance {
        Some(bits) => Some(JointStart {
            distance: f64::from_bits(bits),
            corrections: if scalars.has_start_corrections {
                Some(a.f64_2("start_corrections")?)
            } else {
                None
            },
            probe: if scalars.has_start_probe {
                Some(a.c64_3("start_probe")?)
            } else {
                None
            },
        }),
        None => None,
    };
    let joint = match scalars.joint {
        None => None,
        Some(j) => {
            let params = a.params("", f64::from_bits(j.distance))?;
            let last_good = match j.last_good_distance {
                Some(d) => Some(a.params("last_good_", f64::from_bits(d))?),
                None => None,
            };
            let mut optimizers = Vec::with_capacity(4);
            for (k, name) in OPTIMIZERS.iter().enumerate() {
                optimizers.push(OptimizerState {
                    kind: j.optimizer,
                    m: a.f64_1(&format!("{name}_m"))?,
                    v: a.f64_1(&format!("{name}_v"))?,
                    t: a.u32_1(&format!("{name}_t"))?,
                    steps: j.steps[k],
                    v_max: j.v_max[k].map(f64::from_bits),
                });
            }
            let history = match a.take("history", 2)? {
                (s, Values::F64(v)) if s[1] == 5 => v
                    .chunks_exact(5)
                    .map(|r| EpochStats {
                        epoch: r[0] as usize,
                        loss: r[1],
                        distance: r[2],
                        median_correction: r[3],
                        seconds: r[4],
                    })
                    .collect(),
                _ => return Err(a.wrong("history", "E x 5 float64")),
            };
            let order = match a.take("order", 1)? {
                (_, Values::U64(v)) => v.into_iter().map(|k| k as usize).collect(),
                _ => return Err(a.wrong("order", "uint64")),
            };
            let optimizers: [OptimizerState; 4] = optimizers
                .try_into()
                .map_err(|_| Error::field(path, "optimizers", "expected four"))?;
            Some(JointState {
                epoch: j.epoch,
                done: j.done,
                shuffled: j.shuffled,
                partial_loss: f64::from_bits(j.partial_loss),
                params,
                last_good,
                optimizers,
                u: f64::from_bits(j.u),
                rng: serde_json::from_str(&j.rng).map_err(|e| {
                    Error::field(
                        path,
                        "rng",
                        format!("expected the shuffling generator: {e}"),
                    )
                })?,
                order,
                history,
                first_loss: j.first_loss.map(f64::from_bits),
                seconds: f64::from_bits(j.seconds),
                settings: j.settings,
            })
        }
    };
    Ok((Checkpoint { start, joint }, scalars.meta))
}
