#!/usr/bin/python3
"""The files a dataset reaches into, with the real binary under real mpirun: virtual datasets
over several files, external links and external raw storage. Each is resolved when the data is
opened, by HDF5's own rules (checked against the library by reading the same files with h5py
under the same environment), and a missing or bad one is refused with one line (exit 3) by
train, encode, evaluate and pca alike, leaving every file as it was.

    python3 tests/e2e/test_sources.py path/to/aetrain
"""
import hashlib
import os
import shutil
import subprocess
import sys
import unittest

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_support  # noqa: E402
from cli_support import run, weights  # noqa: E402

ROWS, COLS = 600, 16
PART = ROWS // 3  # three sources of 200 rows
# The same blocks and windows for every layout, so that equal rows give equal weights.
TRAIN = ["--layers", "8,4", "--batch-size", "50", "--epochs", "2", "--seed", "1",
         "--data-block-rows", "50", "--window-rows", "300"]
# Where HDF5 looks is part of what is tested: the environment starts without the variables.
for _name in ("HDF5_VDS_PREFIX", "HDF5_EXT_PREFIX", "HDF5_EXTFILE_PREFIX"):
    cli_support.ENV.pop(_name, None)


def make_vds(path, sources, fill=0.0, rows=ROWS):
    """A virtual dataset /train of `rows` rows: each source (file name as stored, dataset,
    first row in the virtual dataset, a VirtualSource or its shape) fills its rows."""
    layout = h5py.VirtualLayout(shape=(rows, COLS), dtype=np.float32)
    for name, dset, first, source in sources:
        if isinstance(source, tuple):
            source = h5py.VirtualSource(name, dset, shape=source)
        layout[first:first + source.shape[0]] = source
    with h5py.File(path, "w") as f:
        f.create_virtual_dataset("train", layout, fillvalue=fill)


def snapshot(*dirs):
    """sha256 of every file under `dirs`."""
    out = {}
    for top in dirs:
        for root, _, files in os.walk(top):
            for name in files:
                path = os.path.join(root, name)
                with open(path, "rb") as f:
                    out[path] = hashlib.sha256(f.read()).hexdigest()
    return out


def h5py_reads(path, env):
    """/train of `path` as the HDF5 library reads it under `env` (in a process of its own, since
    the library reads the variables when it starts)."""
    out = path + ".npy"
    code = ("import sys, h5py, numpy as np\n"
            "with h5py.File(sys.argv[1], 'r') as f: np.save(sys.argv[2], f['train'][()])\n")
    subprocess.run(["/usr/bin/python3", "-c", code, path, out], check=True,
                   env=dict(cli_support.ENV, **env))
    values = np.load(out)
    os.remove(out)
    return values


class Sources(cli_support.BinaryTest):
    @classmethod
    def setUpClass(cls):
        cls.d = cli_support.temp_dir()
        cls.x = np.random.default_rng(7).random((ROWS, COLS)).astype(np.float32)
        p = cls.p = staticmethod(lambda name: os.path.join(cls.d, name))
        with h5py.File(p("plain.h5"), "w") as f:
            f["/train"] = cls.x
        # Three sources; the third's name has a directory in it (relative to the virtual file's).
        os.makedirs(p("sub"))
        cls.names = ["src_a.h5", "src_b.h5", "sub/src_c.h5"]
        for i, name in enumerate(cls.names):
            with h5py.File(p(name), "w") as f:
                f["/part"] = cls.x[i * PART:(i + 1) * PART]
        cls.mappings = [(name, "/part", i * PART, (PART, COLS)) for i, name in enumerate(cls.names)]
        make_vds(p("vds.h5"), cls.mappings)
        rc, _, err = run(["train", "--data", p("plain.h5"), "--checkpoint", p("reference.h5")]
                         + TRAIN, ranks=2)
        assert rc == 0, err
        cls.reference = weights(p("reference.h5"))

    # --- helpers -------------------------------------------------------------------------------

    def trains_as_plain(self, data, dataset="/train", cwd=None, **env):
        """Training on `data` gives the reference weights (the rows of plain.h5), bit for bit."""
        ck = self.path("ck.h5")
        if os.path.exists(ck):
            os.remove(ck)
        rc, out, err = run(["train", "--data", data, "--dataset", dataset, "--checkpoint", ck]
                           + TRAIN, ranks=2, cwd=cwd, **env)
        self.assertEqual(rc, 0, err)
        got = weights(ck)
        self.assertEqual(sorted(got), sorted(self.reference))
        for name in got:
            self.assertTrue(np.array_equal(got[name], self.reference[name]), name)

    def refused(self, data, needle, dataset="/train", commands=("train",), cwd=None, **env):
        """Each command refuses `data` with exit 3 and one line holding `needle`, changes no
        file and leaves no output."""
        outputs = {"train": ["--checkpoint", self.path("out_ck.h5"), "--metrics",
                             self.path("out.jsonl")] + TRAIN,
                   "encode": ["--model", self.p("reference.h5"), "--out", self.path("codes.h5")],
                   "evaluate": ["--model", self.p("reference.h5"), "--per-sample",
                                self.path("per.h5")],
                   "pca": ["--components", "4", "--out", self.path("pca.h5")]}
        before = snapshot(self.d, self.dir)
        for command in commands:
            line = self.assert_fails([command, "--data", data, "--dataset", dataset]
                                     + outputs[command], 3, needle, cwd=cwd, **env)
            self.assertEqual(snapshot(self.d, self.dir), before, command)
        return line

    def copy_tree(self, *names):
        """A new directory holding copies of these files of the class's directory."""
        top = os.path.join(self.dir, "copy")
        for name in names:
            os.makedirs(os.path.dirname(os.path.join(top, name)), exist_ok=True)
            shutil.copy(self.p(name), os.path.join(top, name))
        return top

    # --- virtual datasets ----------------------------------------------------------------------

    def test_virtual_dataset_trains_as_its_rows(self):
        with h5py.File(self.p("vds.h5"), "r") as f:
            self.assertTrue(np.array_equal(f["train"][()], self.x))
        self.trains_as_plain(self.p("vds.h5"))
        # Virtual over virtual: a source that is itself virtual is followed.
        make_vds(self.path("outer.h5"), [(self.p("vds.h5"), "/train", 0, (ROWS, COLS))])
        self.trains_as_plain(self.path("outer.h5"))

    def test_missing_source_file(self):
        for fill in (0.0, np.nan):
            top = self.copy_tree("src_a.h5", "sub/src_c.h5")
            vds = os.path.join(top, "vds.h5")
            make_vds(vds, self.mappings, fill=fill)
            # What HDF5 alone does: the missing rows read as the fill value, without a word.
            rows = h5py_reads(vds, {})[PART:2 * PART]
            self.assertTrue(np.all(np.isnan(rows)) if np.isnan(fill) else np.all(rows == 0))
            line = self.refused(
                vds, f"{vds}: /train: virtual dataset source src_b.h5:/part (rows 200-399) is "
                     f"missing: no such file (looked for {top}/src_b.h5, src_b.h5; HDF5_VDS_PREFIX",
                commands=("train", "encode", "evaluate", "pca"))
            self.assertTrue(line.endswith("HDF5_VDS_PREFIX is unset): set HDF5_VDS_PREFIX to the "
                                          "directory that holds it"), line)
            shutil.rmtree(top)

    def test_missing_source_dataset(self):
        top = self.copy_tree("src_a.h5", "sub/src_c.h5")
        with h5py.File(os.path.join(top, "src_b.h5"), "w") as f:
            f["/other"] = self.x[:PART]
        vds = os.path.join(top, "vds.h5")
        make_vds(vds, self.mappings)
        self.refused(vds, f"{vds}: /train: virtual dataset source src_b.h5:/part (rows 200-399) "
                          f"is missing: {top}/src_b.h5 has no dataset /part")

    def test_source_smaller_than_its_mapping(self):
        top = self.copy_tree("src_a.h5", "sub/src_c.h5")
        with h5py.File(os.path.join(top, "src_b.h5"), "w") as f:
            f["/part"] = self.x[:150]
        vds = os.path.join(top, "vds.h5")
        make_vds(vds, self.mappings)  # the whole source: stored without its shape
        self.refused(vds, f"source src_b.h5:/part (rows 200-399) does not fit: {top}/src_b.h5:"
                          "/part is 150 x 16 (2400 values); the mapping takes all of it for "
                          "3200 values")
        # A selection in it: rows 0-199 of a source that was 250 rows long.
        sliced = h5py.VirtualSource("src_b.h5", "/part", shape=(250, COLS))[0:PART]
        make_vds(vds, self.mappings[:1] + [("src_b.h5", "/part", PART, sliced)] + self.mappings[2:])
        self.refused(vds, f"source src_b.h5:/part (rows 200-399) is too small: {top}/src_b.h5:"
                          "/part is 150 x 16; the mapping reads rows 0-199 of it")
        # Some of the columns of a wider source, mapped to some of the virtual dataset's.
        wide = h5py.VirtualSource("src_b.h5", "/part", shape=(150, 40))[0:100, 20:36]
        make_vds(vds, [("src_b.h5", "/part", 0, wide)], rows=100)
        self.refused(vds, f"source src_b.h5:/part (rows 0-99) is too small: {top}/src_b.h5:"
                          "/part is 150 x 16; the mapping reads rows 0-99, columns 20-35 of it")

    def test_source_of_strings(self):
        top = self.copy_tree("src_a.h5", "sub/src_c.h5")
        with h5py.File(os.path.join(top, "src_b.h5"), "w") as f:
            f.create_dataset("/part", shape=(PART, COLS), dtype=h5py.string_dtype())
        vds = os.path.join(top, "vds.h5")
        make_vds(vds, self.mappings)
        self.refused(vds, f"source src_b.h5:/part (rows 200-399) cannot be read: {top}/src_b.h5:"
                          "/part holds string values; numbers are needed")

    def test_source_of_a_source_missing(self):
        top = self.copy_tree("src_a.h5", "sub/src_c.h5")
        inner = os.path.join(top, "vds.h5")
        make_vds(inner, self.mappings)
        outer = self.path("outer.h5")
        make_vds(outer, [(inner, "/train", 0, (ROWS, COLS))])
        self.refused(outer, f"{outer}: /train: through virtual dataset source {inner}:/train "
                            "(rows 0-599): virtual dataset source src_b.h5:/part (rows 200-399) "
                            "is missing: no such file")
        # A cycle: a virtual dataset over itself ends at the nesting limit.
        make_vds(self.path("self.h5"), [(".", "/train", 0, (ROWS, COLS))])
        self.refused(self.path("self.h5"), "nest more than 8 deep here (a cycle?)")

    def test_relative_sources_from_another_directory(self):
        # Names are looked for beside the virtual file, wherever aetrain runs.
        elsewhere = os.path.join(self.dir, "elsewhere")
        os.makedirs(elsewhere)
        self.trains_as_plain(self.p("vds.h5"), cwd=elsewhere)
        self.trains_as_plain(os.path.relpath(self.p("vds.h5"), elsewhere), cwd=elsewhere)

    def test_vds_prefix(self):
        store = self.copy_tree(*self.names)  # the sources, moved away from the virtual file
        moved = os.path.join(self.dir, "moved")
        os.makedirs(moved)
        vds = os.path.join(moved, "vds.h5")
        shutil.copy(self.p("vds.h5"), vds)
        self.refused(vds, "virtual dataset source src_a.h5:/part (rows 0-199) is missing: no such "
                          f"file (looked for {moved}/src_a.h5, src_a.h5; "
                          "HDF5_VDS_PREFIX is unset): set HDF5_VDS_PREFIX to the directory")
        for prefix in (store, "/nowhere:" + store, "${ORIGIN}/../copy"):
            env = {"HDF5_VDS_PREFIX": prefix}
            self.trains_as_plain(vds, **env)
            # The library finds the same files under the same variable.
            self.assertTrue(np.array_equal(h5py_reads(vds, env), self.x), prefix)
        self.assertTrue(np.all(h5py_reads(vds, {}) == 0))

    def test_the_first_file_in_hdf5s_order_is_the_one_checked(self):
        # Two copies of src_b.h5, one too short: the checks must look at the one HDF5 reads.
        top = self.copy_tree(*self.names)
        vds = os.path.join(top, "vds.h5")
        shutil.copy(self.p("vds.h5"), vds)
        short = os.path.join(self.dir, "short")
        os.makedirs(short)
        with h5py.File(os.path.join(short, "src_b.h5"), "w") as f:
            f["/part"] = self.x[:100]
        # The virtual file's directory comes before the current one ...
        self.trains_as_plain(vds, cwd=short)
        # ... and HDF5_VDS_PREFIX before both.
        env = {"HDF5_VDS_PREFIX": short}
        self.refused(vds, f"source src_b.h5:/part (rows 200-399) does not fit: {short}/"
                          "src_b.h5:/part is 100 x 16", **env)
        os.replace(os.path.join(short, "src_b.h5"), os.path.join(short, "short.h5"))
        shutil.copy(self.p("src_b.h5"), os.path.join(short, "src_b.h5"))
        os.remove(os.path.join(top, "src_b.h5"))
        self.trains_as_plain(vds, **env)
        self.assertTrue(np.array_equal(h5py_reads(vds, env), self.x))
        # A file in the way that is not HDF5 is named, not skipped.
        with open(os.path.join(top, "src_b.h5"), "w") as f:
            f.write("not HDF5\n")
        self.refused(vds, f"source src_b.h5:/part (rows 200-399) cannot be read: {top}/src_b.h5 "
                          "is not an HDF5 file")

    def test_more_sources_than_open_files(self):
        # HDF5 keeps a virtual dataset's source files open while it reads it, and reads those it
        # cannot open as the fill value: 300 sources under a limit of 300 open files are refused,
        # and train as their rows under the limit the message asks for.
        top = os.path.join(self.dir, "many")
        os.makedirs(top)
        sources = []
        for i in range(ROWS // 2):
            with h5py.File(os.path.join(top, f"s{i}.h5"), "w") as f:
                f["/part"] = self.x[2 * i:2 * i + 2]
            sources.append((f"s{i}.h5", "/part", 2 * i, (2, COLS)))
        vds = os.path.join(top, "vds.h5")
        make_vds(vds, sources)
        ck = self.path("ck.h5")

        def train(limit):
            cmd = cli_support.MPIRUN + ["-n", "2", "--timeout", "300", cli_support.AETRAIN, "train",
                                        "--data", vds, "--checkpoint", ck] + TRAIN
            p = subprocess.run(["bash", "-c", f'ulimit -n {limit} && exec "$@"', "-"] + cmd,
                               capture_output=True, text=True, env=cli_support.ENV, timeout=330)
            return p.returncode, p.stderr

        before = snapshot(self.d, self.dir)
        rc, err = train(300)
        self.assertEqual(rc, 3, err)
        lines = cli_support.our_errors(err)
        self.assertEqual(len(lines), 1, err)
        self.assertIn(f"{vds}: /train: reading it keeps 300 files open at once, and this process "
                      "may open 300 (less 64 for MPI and the outputs); HDF5 would read the rest "
                      "as the fill value: raise the limit (ulimit -n 364 before mpirun)", lines[0])
        self.assertEqual(snapshot(self.d, self.dir), before)
        rc, err = train(364)
        self.assertEqual(rc, 0, err)
        got = weights(ck)
        for name in self.reference:
            self.assertTrue(np.array_equal(got[name], self.reference[name]), name)

    def test_printf_style_mappings_are_refused(self):
        vds = self.path("printf.h5")
        vspace = h5py.h5s.create_simple((ROWS, COLS), (h5py.h5s.UNLIMITED, COLS))
        vspace.select_hyperslab((0, 0), (h5py.h5s.UNLIMITED, 1), stride=(PART, 1),
                                block=(PART, COLS))
        source = h5py.h5s.create_simple((PART, COLS))
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_virtual(vspace, b"src_%b.h5", b"/part", source)
        with h5py.File(vds, "w") as f:
            h5py.h5d.create(f.id, b"train", h5py.h5t.NATIVE_FLOAT, vspace, dcpl=dcpl).close()
        self.refused(vds, f"{vds}: /train: virtual dataset source src_%b.h5:/part is a "
                          "printf-style (%b) or unlimited mapping, which aetrain does not read (it "
                          "cannot tell a missing source from the end of the data): give the source "
                          "files to --data instead")

    # --- external links ------------------------------------------------------------------------

    def test_external_links(self):
        links = self.path("links.h5")
        with h5py.File(links, "w") as f:
            f["group"] = h5py.ExternalLink(self.p("plain.h5"), "/")
            f["direct"] = h5py.ExternalLink(os.path.relpath(self.p("plain.h5"), self.dir),
                                            "/train")
            f["gone"] = h5py.ExternalLink("gone.h5", "/")
            f["empty"] = h5py.ExternalLink(self.p("plain.h5"), "/nothing")
            f.create_group("inner")["hop"] = h5py.ExternalLink(self.p("vds.h5"), "/train")
        self.trains_as_plain(links, "/group/train")
        self.trains_as_plain(links, "/direct")
        self.trains_as_plain(links, "/inner/hop")  # a virtual dataset behind a link
        self.refused(links, f"{links}: /gone/train: external link /gone -> gone.h5:/ is missing: "
                            f"no such file (looked for {self.dir}/gone.h5, gone.h5; "
                            "HDF5_EXT_PREFIX is unset): set HDF5_EXT_PREFIX "
                            "to the directory that holds it", "/gone/train",
                     commands=("train", "encode", "evaluate", "pca"))
        self.refused(links, f"{links}: /empty/train: external link /empty -> {self.p('plain.h5')}"
                            f":/nothing is missing: {self.p('plain.h5')} has no object /nothing",
                     "/empty/train")
        # HDF5_EXT_PREFIX is honoured: the link's file found in another directory.
        moved = os.path.join(self.dir, "moved")
        os.makedirs(moved)
        with h5py.File(os.path.join(moved, "l.h5"), "w") as f:
            f["x"] = h5py.ExternalLink("plain.h5", "/train")
        self.refused(os.path.join(moved, "l.h5"), "external link /x -> plain.h5:/train is "
                                                  "missing: no such file", "/x")
        self.trains_as_plain(os.path.join(moved, "l.h5"), "/x", HDF5_EXT_PREFIX=self.d)

    # --- external raw storage -----------------------------------------------------------------

    def external(self, top, sizes):
        """raw.h5 in `top` with /train stored in raw files raw_0.bin ... of these sizes
        (written from `top`, so that the names are relative to it)."""
        code = ("import sys, h5py, numpy as np\n"
                "x = np.load(sys.argv[1]); sizes = [int(s) for s in sys.argv[2:]]\n"
                "ext = [(f'raw_{i}.bin', 0, s) for i, s in enumerate(sizes)]\n"
                "with h5py.File('raw.h5', 'w') as f:\n"
                "    f.create_dataset('train', data=x, external=ext)\n")
        np.save(os.path.join(top, "x.npy"), self.x)
        subprocess.run(["/usr/bin/python3", "-c", code, "x.npy"] + [str(s) for s in sizes],
                       check=True, cwd=top, env=cli_support.ENV)
        os.remove(os.path.join(top, "x.npy"))
        return os.path.join(top, "raw.h5")

    def test_external_raw_storage(self):
        top = os.path.join(self.dir, "raw")
        os.makedirs(top)
        half = ROWS * COLS * 4 // 2
        raw = self.external(top, [half, half + 1000])  # the second longer than the values
        self.trains_as_plain(raw, cwd=top)
        # HDF5 looks for raw files in the current directory: elsewhere they are missing, and
        # ${ORIGIN} says "beside the data file".
        self.refused(raw, f"{raw}: /train: external raw data file raw_0.bin is missing: no such "
                          "file (looked for raw_0.bin; HDF5_EXTFILE_PREFIX is unset): it is in "
                          f"the data file's directory ({top}/raw_0.bin): set "
                          "HDF5_EXTFILE_PREFIX='${ORIGIN}' to read it from there",
                     commands=("train", "encode", "evaluate", "pca"))
        self.trains_as_plain(raw, HDF5_EXTFILE_PREFIX="${ORIGIN}")
        self.trains_as_plain(raw, HDF5_EXTFILE_PREFIX=top)
        # A raw file shorter than the values it holds: HDF5 reads the rest as zeros.
        with open(os.path.join(top, "raw_1.bin"), "r+b") as f:
            f.truncate(half - 4)
        self.assertTrue(np.all(h5py_reads(raw, {"HDF5_EXTFILE_PREFIX": top})[-1, -1:] == 0))
        self.refused(raw, f"{raw}: /train: external raw data file raw_1.bin is too short: it "
                          f"holds {half - 4} bytes; the dataset's values are bytes 0-{half - 1} "
                          "of it (HDF5 would read the rest as zeros)", cwd=top,
                     commands=("train", "pca"))
        self.refused(raw, f"too short: {top}/raw_1.bin holds {half - 4} bytes",
                     HDF5_EXTFILE_PREFIX="${ORIGIN}")
        os.remove(os.path.join(top, "raw_1.bin"))
        self.refused(raw, "external raw data file raw_1.bin is missing: no such file (looked for "
                          "raw_1.bin; HDF5_EXTFILE_PREFIX is unset)", cwd=top)


if __name__ == "__main__":
    cli_support.AETRAIN = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
