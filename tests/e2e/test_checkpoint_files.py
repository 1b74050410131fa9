#!/usr/bin/python3
"""Checkpoint and model files under checksums (format version 5), end to end with the real
binary under real mpirun: a damaged file is refused by every command that reads it (exit 4, one
line naming the file and the damaged dataset) and never replaced; h5py and h5dump read the files
(and h5py refuses a damaged chunk too); a version-4 file without checksums still loads and
resumes exactly.

    tests/e2e/test_checkpoint_files.py build/aetrain
"""
import os
import shutil
import subprocess
import sys
import unittest

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_support  # noqa: E402
from cli_support import BinaryTest, our_errors, run, sha256, temp_dir, weights, write  # noqa: E402

KERNEL = "/model/encoder/layer_0/kernel"


def chunk_place(path, dataset):
    """(file offset, size) of a dataset's only chunk: HDF5's addresses count from the end of the
    user block (the checksum block) before HDF5 1.14.4, from the file's start since."""
    with h5py.File(path, "r") as f:
        info = f[dataset].id.get_chunk_info(0)
        base = f.userblock_size if h5py.h5.get_libversion() < (1, 14, 4) else 0
        return base + info.byte_offset, info.size


def flip(path, offsets):
    """Flips every bit of the bytes at `offsets`, in place."""
    with open(path, "r+b") as f:
        for at in offsets:
            f.seek(at)
            byte = f.read(1)[0]
            f.seek(at)
            f.write(bytes([byte ^ 0xFF]))


class CheckpointFiles(BinaryTest):
    @classmethod
    def setUpClass(cls):
        cls.shared = temp_dir()
        cls.data = os.path.join(cls.shared, "data.h5")
        write(cls.data, rows=400, cols=20)
        cls.args = ["train", "--data", cls.data, "--layers", "8,3", "--batch-size", "50"]
        cls.ck = os.path.join(cls.shared, "ck.h5")
        rc, _, err = run(cls.args + ["--epochs", "1", "--checkpoint", cls.ck], ranks=2)
        assert rc == 0, err
        cls.pca = os.path.join(cls.shared, "pca.h5")
        rc, _, err = run(["pca", "--data", cls.data, "--components", "3", "--out", cls.pca],
                         ranks=2)
        assert rc == 0, err

    def damaged(self, src, dataset, name, count=16):
        """A copy of `src` with `count` bytes flipped across the data of `dataset`'s chunk (not
        its 4 bytes of checksum)."""
        path = self.path(name)
        shutil.copy(src, path)
        at, size = chunk_place(path, dataset)
        with open(path, "rb") as f:  # the chunk is where h5py says: its values, then checksum
            f.seek(at)
            stored = f.read(size - 4)
        with h5py.File(path, "r") as f:
            self.assertEqual(stored, f[dataset][()].tobytes())
        flip(path, sorted({at + i * (size - 4) // count for i in range(count)}))
        return path

    def assert_refused(self, args, path, needle, ranks=2, output=None):
        """Exit 4, one error line naming the file and `needle`, the file unchanged, no output."""
        before = sha256(path)
        rc, _, err = run(args, ranks)
        self.assertEqual(rc, 4, err)
        lines = our_errors(err)
        self.assertEqual(len(lines), 1, err)
        self.assertIn(path + ": " + needle, lines[0])
        self.assertEqual(sha256(path), before)
        self.assertFalse(os.path.exists(path + ".tmp"))
        if output:
            self.assertFalse(os.path.exists(output))
        return lines[0]

    def test_a_damaged_kernel_is_refused_by_every_command(self):
        bad = self.damaged(self.ck, KERNEL, "kernel.h5")
        # HDF5's own words follow: "data error detected by Fletcher32 checksum" (1.10), "filter
        # returned failure during read" (1.14).
        needle = KERNEL + ": checksum mismatch: the file is damaged ("
        for ranks in (1, 2):
            self.assert_refused(self.args + ["--epochs", "2", "--checkpoint", bad, "--resume"],
                                bad, needle, ranks)
        self.assert_refused(self.args + ["--epochs", "1", "--init-from", bad, "--checkpoint",
                                         self.path("new.h5")], bad, needle,
                            output=self.path("new.h5"))
        codes = self.path("codes.h5")
        self.assert_refused(["encode", "--model", bad, "--data", self.data, "--out", codes], bad,
                            needle, output=codes)
        self.assert_refused(["evaluate", "--model", bad, "--data", self.data], bad, needle)
        self.assert_refused(["inspect", bad], bad, needle, ranks=0)
        # h5py sees the damage too: HDF5 checks the chunk's checksum for every reader.
        with h5py.File(bad, "r") as f, self.assertRaisesRegex(OSError, "Fletcher32|filter"):
            f[KERNEL][()]

    def test_each_damaged_dataset_is_named(self):
        for dataset in ("/model/decoder/layer_1/bias", "/optimizer/m/encoder/layer_1/kernel",
                        "/optimizer/v/decoder/layer_0/bias", "/train/sources"):
            with self.subTest(dataset=dataset):
                bad = self.damaged(self.ck, dataset, "one.h5", count=4)
                self.assert_refused(self.args + ["--epochs", "2", "--checkpoint", bad,
                                                 "--resume"], bad,
                                    dataset + ": checksum mismatch: the file is damaged")
        for dataset in ("/pca/components", "/pca/mean", KERNEL):
            with self.subTest(dataset=dataset):
                bad = self.damaged(self.pca, dataset, "pca_bad.h5", count=4)
                codes = self.path("pca_codes.h5")
                self.assert_refused(["encode", "--model", bad, "--data", self.data, "--out",
                                     codes], bad,
                                    dataset + ": checksum mismatch: the file is damaged",
                                    output=codes)

    def test_a_damaged_string_attribute_is_refused(self):
        # Its value is in HDF5's global heap, which the file's own checksum covers.
        bad = self.path("config.h5")
        shutil.copy(self.ck, bad)
        with open(bad, "rb") as f:
            raw = f.read()
        at = raw.find(b'shuffle = "')
        self.assertGreater(at, 0)
        self.assertEqual(raw.find(b'shuffle = "', at + 1), -1)
        flip(bad, [at + 3])
        self.assert_refused(self.args + ["--epochs", "2", "--checkpoint", bad, "--resume"], bad,
                            "checksum mismatch: the file is damaged (its bytes differ from the "
                            "CRC-32 in its first 4096 bytes")

    def test_h5py_and_h5dump_read_the_files(self):
        for path in (self.ck, self.pca):
            r = subprocess.run(["h5dump", "-H", path], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn('DATASET "kernel"', r.stdout)
            r = subprocess.run(["h5dump", "-p", "-d", KERNEL, path], capture_output=True,
                               text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("CHECKSUM FLETCHER32", r.stdout)
            with h5py.File(path, "r") as f:
                self.assertEqual(f.attrs["format_version"], 5)
                self.assertIsInstance(f["model"].attrs["activation"], str)  # not bytes
                self.assertEqual(f.userblock_size, 4096)
                f.visititems(lambda name, obj: obj[()] if isinstance(obj, h5py.Dataset) else None)
            with h5py.File(path, "r") as src, h5py.File(self.path("copy.h5"), "w") as dst:
                for key in src:  # H5Ocopy (HDF5 1.10 crashed on /train's 14 attributes in a heap)
                    src.copy(key, dst)
        with open(self.ck, "rb") as f:
            self.assertRegex(f.read(4096),
                             rb"^aetrain crc32 [0-9a-f]{8}\n(data [0-9]+ [0-9]+\n)+\0+$")

    def test_a_version_4_file_without_checksums_resumes_exactly(self):
        # What aetrain wrote before version 5: contiguous datasets, no checksum block.
        old = self.path("v4.h5")
        with h5py.File(self.ck, "r") as src, h5py.File(old, "w") as dst:
            def copy(name, obj):
                if isinstance(obj, h5py.Dataset):  # the same type, contiguous, no filter
                    stored = obj.id.get_type()
                    values = np.empty(obj.shape, obj.dtype)
                    obj.id.read(h5py.h5s.ALL, h5py.h5s.ALL, values, mtype=stored)
                    d = h5py.h5d.create(dst.id, name.encode(), stored, obj.id.get_space())
                    d.write(h5py.h5s.ALL, h5py.h5s.ALL, values, mtype=stored)
                else:
                    dst.require_group(name)
                dst[name].attrs.update(obj.attrs)
            src.visititems(copy)
            dst.attrs.update(src.attrs)
            dst.attrs["format_version"] = 4
        with h5py.File(old, "r") as f:
            self.assertIsNone(f[KERNEL].chunks)
            self.assertFalse(f[KERNEL].fletcher32)
        rc, out, err = run(["inspect", old], ranks=0)
        self.assertEqual(rc, 0, err)
        new = self.path("v5.h5")
        shutil.copy(self.ck, new)
        for path in (old, new):
            rc, _, err = run(self.args + ["--epochs", "2", "--checkpoint", path, "--resume"],
                             ranks=2)
            self.assertEqual(rc, 0, err)
        a, b = weights(old), weights(new)
        self.assertEqual(set(a), set(b))
        for name in a:
            self.assertTrue(np.array_equal(a[name], b[name]), name)
        with h5py.File(old, "r") as f:  # resuming rewrote it in the new format
            self.assertEqual(f.attrs["format_version"], 5)
            self.assertTrue(f[KERNEL].fletcher32)


if __name__ == "__main__":
    cli_support.AETRAIN = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
