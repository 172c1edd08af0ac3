"""h5py/numpy side of the interoperability tests (run by tests/h5py_interop.rs).

Modes:
  check-cxi PATH JSON     check a CXI file autopty wrote against the expectations in JSON
  check-truth PATH JSON   check a truth file autopty wrote
  check-npy PATH JSON     check a .npy file autopty wrote
  write-cxi PATH [LINK]   write a CXI file the way beamline software does: gzip-compressed
                          chunked int32 data, uint32 mask, energy in joules, translation
                          (J, 3), and a soft link /entry_1/data_1/data -> detector_1/data
                          (or, with LINK = "detector-link", the data under data_1 and the
                          link at detector_1/data)
Exits non-zero with a message on the first mismatch.
"""
import json
import sys

import h5py
import numpy as np


def fail(msg):
    print("MISMATCH:", msg)
    sys.exit(1)


def expect(cond, msg):
    if not cond:
        fail(msg)


def close(a, b, rel=1e-12):
    return abs(a - b) <= rel * max(abs(a), abs(b))


def check_cxi(path, exp):
    with h5py.File(path, "r") as f:
        det = f["entry_1/instrument_1/detector_1"]
        data = det["data"]
        j, n = exp["J"], exp["N"]
        expect(data.shape == (j, n, n), f"data shape {data.shape}")
        expect(data.dtype == np.float32, f"data dtype {data.dtype}")
        for k, r, c, v in exp["data_samples"]:
            expect(data[k, r, c] == np.float32(v), f"data[{k},{r},{c}] = {data[k, r, c]} != {v}")
        mask = det["mask"]
        expect(mask.shape == (n, n) and mask.dtype == np.uint32, f"mask {mask.shape} {mask.dtype}")
        expect(int((mask[()] != 0).sum()) == exp["masked"], "masked count")
        t = f["entry_1/sample_1/geometry_1/translation"]
        expect(t.shape == (j, 3) and t.dtype == np.float64, f"translation {t.shape} {t.dtype}")
        for k, (y, x) in enumerate(exp["positions"]):
            expect(t[k, 0] == -x and t[k, 1] == -y and t[k, 2] == 0.0, f"translation row {k}")
        src = f["entry_1/instrument_1/source_1"]
        expect(src["energy"].shape == (), "energy must be a scalar")
        expect(close(float(src["energy"][()]), exp["energy_j"], 1e-12), "energy (J)")
        expect(float(src["wavelength"][()]) == exp["wavelength"], "wavelength")
        expect(float(det["distance"][()]) == exp["distance"], "distance")
        expect(float(det["x_pixel_size"][()]) == exp["pixel"], "x_pixel_size")
        expect(float(det["y_pixel_size"][()]) == exp["pixel"], "y_pixel_size")
        regime = f["entry_1/autopty/regime"][()]
        regime = regime.decode() if isinstance(regime, bytes) else str(regime)
        expect(regime == exp["regime"], f"regime {regime!r}")
        if exp["source_distance"] is None:
            expect("source_distance" not in f["entry_1/autopty"], "unexpected source_distance")
        else:
            expect(float(f["entry_1/autopty/source_distance"][()]) == exp["source_distance"],
                   "source_distance")


def check_truth(path, exp):
    with h5py.File(path, "r") as f:
        obj = f["object"][()]
        probe = f["probe"][()]
        expect(obj.dtype == np.complex64, f"object dtype {obj.dtype}")
        expect(probe.dtype == np.complex64, f"probe dtype {probe.dtype}")
        expect(list(obj.shape) == exp["object_shape"], f"object shape {obj.shape}")
        expect(list(probe.shape) == exp["probe_shape"], f"probe shape {probe.shape}")
        r, c, re, im = exp["object_sample"]
        expect(obj[r, c] == np.complex64(complex(re, im)), f"object[{r},{c}] = {obj[r, c]}")
        m, r, c, re, im = exp["probe_sample"]
        expect(probe[m, r, c] == np.complex64(complex(re, im)), f"probe[{m},{r},{c}]")
        pos = f["positions"][()]
        expect(pos.dtype == np.float64 and pos.shape == (len(exp["positions"]), 2), "positions")
        expect(np.array_equal(pos, np.array(exp["positions"])), "position values")
        expect(float(f["geometry/wavelength"][()]) == exp["wavelength"], "wavelength")
        expect(int(f["geometry/frame"][()]) == exp["probe_shape"][1], "frame")


def check_npy(path, exp):
    a = np.load(path)
    expect(str(a.dtype) == exp["dtype"], f"dtype {a.dtype}")
    expect(list(a.shape) == exp["shape"], f"shape {a.shape}")
    idx = tuple(exp["index"])
    v = a[idx]
    want = complex(*exp["value"]) if a.dtype.kind == "c" else exp["value"][0]
    expect(v == (np.complex64(want) if a.dtype.kind == "c" else np.float32(want)),
           f"value at {idx}: {v}")


def write_cxi(path, link):
    j, n = 5, 12
    k, r, c = np.meshgrid(np.arange(j), np.arange(n), np.arange(n), indexing="ij")
    data = ((k * 1009 + r * 31 + c * 7) % 70000).astype(np.int32)
    data[:, 3, 4] = -1  # a detector gap, flagged in the mask
    mask = np.zeros((n, n), np.uint32)
    mask[3, 4] = 1
    mask[0, 0] = 2
    kk = np.arange(j, dtype=np.float64)
    translation = np.stack([2e-7 * kk, -3e-7 * kk + 1e-8, np.zeros(j)], axis=1)
    with h5py.File(path, "w") as f:
        f["cxi_version"] = 140
        det = f.create_group("entry_1/instrument_1/detector_1")
        real = "entry_1/data_1/data" if link == "detector-link" else "entry_1/instrument_1/detector_1/data"
        f.create_dataset(real, data=data, chunks=(1, n, n), compression="gzip", compression_opts=4)
        det["mask"] = mask
        det["distance"] = 3.25
        det["x_pixel_size"] = 172e-6
        det["y_pixel_size"] = 172e-6
        f["entry_1/instrument_1/source_1/energy"] = 6200.0 * 1.602176634e-19
        f["entry_1/sample_1/geometry_1/translation"] = translation
        if link == "detector-link":
            det["data"] = h5py.SoftLink("/entry_1/data_1/data")
        else:
            f["entry_1/data_1/data"] = h5py.SoftLink("/entry_1/instrument_1/detector_1/data")


def main():
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "write-cxi":
        write_cxi(path, sys.argv[3] if len(sys.argv) > 3 else "")
    else:
        exp = json.loads(sys.argv[3])
        {"check-cxi": check_cxi, "check-truth": check_truth, "check-npy": check_npy}[mode](path, exp)
    print("ok")


if __name__ == "__main__":
    main()
