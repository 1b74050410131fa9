#!/usr/bin/python3
"""Single-cell inputs with the real binary under real mpirun: the same counts stored as AnnData
CSR (written by Debian's anndata, by the current PyPI anndata and by hand with unsorted indices),
as a 10x Genomics matrix and dense train to the same losses on 1-3 ranks; the count transforms
(--size-factor, --transform log1p, --features) and their statistics against numpy; encode's
AnnData output read back by anndata; columns found by name; every bad input refused with one
line.

    python3 tests/e2e/test_single_cell.py path/to/aetrain

The tests that write or read files with anndata run under each of two: Debian's
(/usr/bin/python3, package python3-anndata) and the current PyPI release, in a virtual
environment this suite makes when it is missing (AETRAIN_ANNDATA_VENV, default
/var/tmp/aetrain-anndata-venv; pip needs PyPI). Each is skipped, with the reason, where it
cannot be had; what h5py alone writes (10x files, CSR groups by hand, bad files) always runs.
"""
import json
import os
import shutil
import subprocess
import sys
import unittest

import h5py
import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_support  # noqa: E402
from cli_support import forward, metrics, run  # noqa: E402

CELLS, GENES, TYPES = 240, 48, 4
ZERO_ROW = 17  # a cell without counts: a total of 0 under --size-factor
BATCH, EPOCHS = 40, 2  # 6 steps an epoch
DEBIAN_PYTHON = "/usr/bin/python3"
VENV = os.environ.get("AETRAIN_ANNDATA_VENV", "/var/tmp/aetrain-anndata-venv")


# --- anndata: Debian's and PyPI's, each in a process of its own ----------------------------------

# Writes h5ad files of the counts in an .npz, one per (path, layout), with this anndata.
WRITE_ANNDATA = r"""
import json, sys
import anndata, numpy as np, pandas as pd, scipy.sparse as sp
z = np.load(sys.argv[1])
x = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
obs = pd.DataFrame({"cell_type": pd.Categorical([str(t) for t in z["cell_type"]])},
                   index=[str(c) for c in z["cells"]])
n = x.shape[0]
# Columns whose encodings differ between releases: nullable booleans, and (where this anndata
# writes them) nullable strings, which older releases cannot read.
obs["n_genes"] = np.diff(z["indptr"]).astype(np.int64)
obs["doublet"] = pd.array([None if i % 13 == 5 else i % 7 == 0 for i in range(n)],
                          dtype="boolean")
if hasattr(getattr(anndata, "settings", None), "allow_write_nullable_strings"):
    anndata.settings.allow_write_nullable_strings = True
    obs["donor"] = pd.array([f"donor-{i}" for i in range(n)], dtype="string")
var = pd.DataFrame({"highly_variable": z["highly_variable"].astype(bool),
                    "hv_nullable": pd.array(z["highly_variable"].astype(bool), dtype="boolean"),
                    "gene_ids": [str(g) for g in z["ids"]]},
                   index=[str(g) for g in z["genes"]])
for path, layout in json.loads(sys.argv[2]):
    if layout == "csr":
        a = anndata.AnnData(X=x, obs=obs, var=var)
    elif layout == "dense":
        a = anndata.AnnData(X=x.toarray(), obs=obs, var=var)
    elif layout == "csc":
        a = anndata.AnnData(X=x.tocsc(), obs=obs, var=var)
    elif layout == "layers":  # X of other values, the counts in layers["counts"]
        a = anndata.AnnData(X=(x * 0.5).astype(np.float32), obs=obs, var=var,
                            layers={"counts": x})
    elif layout == "raw":  # the counts of every gene in raw, X of the variable genes alone
        a = anndata.AnnData(X=x, obs=obs, var=var)
        a.raw = a
        a = a[:, var["highly_variable"].values].copy()
        a.X = (a.X * 0.5).astype(np.float32)
    a.write_h5ad(path)
print(anndata.__version__)
"""

# Reads h5ad files with this anndata: shape, obs names, obs columns, obsm, as JSON.
READ_ANNDATA = r"""
import json, sys
import anndata, numpy as np
out = {}
for path in sys.argv[1:]:
    try:
        a = anndata.read_h5ad(path)
    except Exception as e:  # a file of encodings this release does not know
        out[path] = {"error": f"{type(e).__name__}: {e}"}
        continue
    obs = {}
    for c in a.obs.columns:
        s = a.obs[c]
        obs[c] = {"dtype": str(s.dtype), "values": [str(v) for v in s],
                  "categories": ([str(v) for v in s.cat.categories]
                                 if str(s.dtype) == "category" else None)}
    out[path] = {"shape": list(a.shape), "obs_names": [str(n) for n in a.obs_names],
                 "obs": obs, "var_names": [str(n) for n in a.var_names],
                 "obsm": {k: np.asarray(v, dtype=np.float64).tolist() for k, v in a.obsm.items()},
                 "obsm_dtype": {k: str(np.asarray(v).dtype) for k, v in a.obsm.items()}}
print(json.dumps(out))
"""

_pythons = {}


def _has_anndata(python):
    try:
        p = subprocess.run([python, "-c", "import anndata"], capture_output=True, text=True,
                           timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    return "" if p.returncode == 0 else (p.stderr.strip().splitlines() or ["failed"])[-1]


def anndata_python(which):
    """(python, "") for an interpreter with anndata: "debian" (/usr/bin/python3) or "pypi" (the
    virtual environment, made when it is missing); (None, why) where there is none."""
    if which in _pythons:
        return _pythons[which]
    if which == "debian":
        why = _has_anndata(DEBIAN_PYTHON)
        _pythons[which] = (None, f"Debian's anndata: {why} (package python3-anndata)") if why \
            else (DEBIAN_PYTHON, "")
        return _pythons[which]
    python = os.path.join(VENV, "bin", "python")
    why = _has_anndata(python) if os.path.exists(python) else "no virtual environment"
    if why:
        steps = [[DEBIAN_PYTHON, "-m", "venv", "--clear", VENV],
                 [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                  "--retries", "1", "--timeout", "30", "anndata"]]
        for cmd in steps:
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as e:
                why = f"{' '.join(cmd[:4])}: {e}"
                break
            if p.returncode != 0:
                why = f"{' '.join(cmd[:4])}: " + (p.stderr.strip().splitlines() or ["failed"])[-1]
                break
        else:
            why = _has_anndata(python)
    _pythons[which] = (None, f"PyPI's anndata in {VENV}: {why}") if why else (python, "")
    return _pythons[which]


WRITERS = ("debian", "pypi")


def anndata_write(which, npz, jobs):
    """Writes [(path, layout)] with anndata `which`; returns its version."""
    python, why = anndata_python(which)
    assert python, why
    p = subprocess.run([python, "-c", WRITE_ANNDATA, npz, json.dumps(jobs)], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def anndata_read(which, *paths):
    """What anndata `which` reads from each h5ad file (READ_ANNDATA's JSON)."""
    python, why = anndata_python(which)
    assert python, why
    p = subprocess.run([python, "-c", READ_ANNDATA] + list(paths), capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


# --- files written with h5py alone ---------------------------------------------------------------

def strings(group, name, values, encoding="string-array"):
    d = group.create_dataset(name, data=np.array([str(v) for v in values], dtype=object),
                             dtype=h5py.string_dtype())
    if encoding:
        d.attrs["encoding-type"] = encoding
        d.attrs["encoding-version"] = "0.2.0"


def dataframe(f, name, index, columns=None):
    """An AnnData dataframe group: its index, and columns of arrays (booleans, numbers),
    ("strings", values), ("categorical", values) or ("nullable-boolean", values, mask)."""
    columns = columns or {}
    g = f.create_group(name)
    g.attrs["encoding-type"] = "dataframe"
    g.attrs["encoding-version"] = "0.2.0"
    g.attrs["_index"] = "_index"
    g.attrs["column-order"] = np.array(list(columns), dtype=h5py.string_dtype())
    strings(g, "_index", index)
    for key, value in columns.items():
        kind = value[0] if isinstance(value, tuple) else "array"
        if kind == "strings":
            strings(g, key, value[1])
            continue
        if kind == "array":
            d = g.create_dataset(key, data=value)
        else:
            d = g.create_group(key)
        d.attrs["encoding-type"] = kind
        d.attrs["encoding-version"] = "0.1.0" if kind == "nullable-boolean" else "0.2.0"
        if kind == "categorical":
            categories = sorted(set(value[1]))
            d.attrs["ordered"] = False
            strings(d, "categories", categories)
            parts = {"codes": np.array([categories.index(v) for v in value[1]], np.int8)}
        elif kind == "nullable-boolean":
            parts = {"values": np.asarray(value[1], bool), "mask": np.asarray(value[2], bool)}
        else:
            parts = {}
        for part, v in parts.items():
            p = d.create_dataset(part, data=v)
            p.attrs["encoding-type"] = "array"
            p.attrs["encoding-version"] = "0.2.0"
    return g


def encoded_group(f, name, kind, version="0.1.0"):
    g = f.create_group(name)
    g.attrs["encoding-type"] = kind
    g.attrs["encoding-version"] = version
    return g


def csr_group(f, name, x, indices=np.int32, indptr=np.int32, data=None, unsorted=False,
              encoding="csr_matrix"):
    """x (a scipy CSR matrix) as an AnnData sparse group; `unsorted` reverses each row's
    entries."""
    ind, val = x.indices.copy(), x.data.copy()
    if unsorted:
        for r in range(x.shape[0]):
            lo, hi = x.indptr[r], x.indptr[r + 1]
            ind[lo:hi], val[lo:hi] = ind[lo:hi][::-1].copy(), val[lo:hi][::-1].copy()
    g = encoded_group(f, name, encoding)
    g.attrs["shape"] = np.array(x.shape, np.int64)
    g.create_dataset("data", data=val.astype(data or x.data.dtype))
    g.create_dataset("indices", data=ind.astype(indices))
    g.create_dataset("indptr", data=x.indptr.astype(indptr))
    return g


def write_h5ad(path, a, x=None, group="X", dense=False, genes=None, var_columns=None, **csr):
    """An AnnData file written with h5py: counts x (default the atlas's) in `group` (X,
    layers/counts beside another X, or raw/X with raw/var beside an X of 3 genes), obs (names,
    cell_type) and var (names, gene_ids, highly_variable and `var_columns`)."""
    x = a.csr if x is None else x
    genes = a.genes if genes is None else genes
    rows = x.shape[0]
    with h5py.File(path, "w") as f:
        f.attrs["encoding-type"] = "anndata"
        f.attrs["encoding-version"] = "0.1.0"
        dataframe(f, "obs", a.cells[:rows], {"cell_type": ("categorical", a.cell_type[:rows])})
        var = {"gene_ids": ("strings", a.ids), "highly_variable": a.hv}
        var.update(var_columns or {})
        for name in ("layers", "obsm", "obsp", "varm", "varp", "uns"):
            encoded_group(f, name, "dict")
        if group == "raw/X":
            encoded_group(f, "raw", "raw")
            dataframe(f, "raw/var", genes, var)
            encoded_group(f, "raw/varm", "dict")
            dataframe(f, "var", genes[:3])
            csr_group(f, "X", sp.csr_matrix(np.ones((rows, 3), np.float32)))
        else:
            dataframe(f, "var", genes, var)
        if group == "layers/counts":
            csr_group(f, "X", (x * 0.5).astype(np.float32))
        if dense:
            d = f.create_dataset(group, data=x.toarray())
            d.attrs["encoding-type"] = "array"
            d.attrs["encoding-version"] = "0.2.0"
        else:
            csr_group(f, group, x, **csr)


def write_10x(path, a, x=None, order=None, data=np.int32, indices=np.int64, indptr=np.int64,
              v2=False):
    """The 10x Genomics v3 layout: /matrix CSC genes x cells (the arrays of cells x genes CSR),
    shape (genes, cells), barcodes, features/name and features/id; `order` permutes the genes
    (the stored gene k is the atlas's order[k]). v2: /GRCh38 with gene_names and genes."""
    x = a.csr if x is None else x
    order = np.arange(x.shape[1]) if order is None else np.asarray(order)
    y = x[:, order].tocsr()
    y.sort_indices()
    with h5py.File(path, "w") as f:
        m = f.create_group("GRCh38" if v2 else "matrix")
        m.create_dataset("data", data=y.data.astype(data))
        m.create_dataset("indices", data=y.indices.astype(indices))
        m.create_dataset("indptr", data=y.indptr.astype(indptr))
        m.create_dataset("shape", data=np.array([y.shape[1], y.shape[0]], np.int32))
        m.create_dataset("barcodes", data=np.array([b.encode() for b in a.barcodes[:y.shape[0]]]))
        names = np.array([a.genes[j].encode() for j in order])
        ids = np.array([a.ids[j].encode() for j in order])
        if v2:
            m.create_dataset("gene_names", data=names)
            m.create_dataset("genes", data=ids)
            return
        feat = m.create_group("features")
        feat.create_dataset("name", data=names)
        feat.create_dataset("id", data=ids)
        feat.create_dataset("feature_type", data=np.array([b"Gene Expression"] * len(order)))
        feat.create_dataset("genome", data=np.array([b"synthetic"] * len(order)))


class Atlas:
    """Negative-binomial counts of CELLS cells x GENES genes in TYPES types (about half of them
    zero), a cell without counts at ZERO_ROW, the names of cells (obs), barcodes (10x), genes
    and gene ids, a highly_variable flag, and a list of genes for --features @FILE."""

    def __init__(self, directory):
        rng = np.random.default_rng(23)
        self.dir = directory
        kind = rng.integers(0, TYPES, CELLS)
        programme = rng.gamma(0.7, 1.0, (TYPES, GENES))
        mu = programme[kind] * rng.lognormal(0.0, 0.4, CELLS)[:, None]
        x = rng.negative_binomial(2, 2 / (2 + mu)).astype(np.float32)
        x[ZERO_ROW] = 0
        self.x = x
        self.csr = sp.csr_matrix(x)
        self.csr.sort_indices()
        self.cell_type = [f"type{k}" for k in kind]
        self.cells = [f"cell{i:03d}" for i in range(CELLS)]
        self.barcodes = [f"AAAC{i:06d}-1" for i in range(CELLS)]
        self.genes = [f"Gene{j}" for j in range(GENES)]
        self.ids = [f"ENSG{j:011d}" for j in range(GENES)]
        # The genes that vary most, as scanpy's flag would say; every one varies.
        spread = x.var(axis=0)
        self.hv = np.zeros(GENES, bool)
        self.hv[np.argsort(-spread)[:GENES // 4]] = True
        # 20 genes, listed out of order, with a comment and a blank line; their columns.
        self.listed = [int(j) for j in rng.permutation(GENES)[:20]]
        self.keep = sorted(self.listed)
        self.genes_txt = self.path("genes.txt")
        with open(self.genes_txt, "w") as f:
            f.write("# genes to keep\n\n" + "".join(f"{self.genes[j]}\n" for j in self.listed))
        self.ids_txt = self.path("ids.txt")
        with open(self.ids_txt, "w") as f:
            f.write("".join(f"{self.ids[j]}\n" for j in self.listed))
        self.npz = self.path("counts.npz")
        np.savez(self.npz, data=self.csr.data, indices=self.csr.indices, indptr=self.csr.indptr,
                 shape=np.array(self.csr.shape), cell_type=np.array(self.cell_type),
                 cells=np.array(self.cells), genes=np.array(self.genes), ids=np.array(self.ids),
                 highly_variable=self.hv)
        self.tenx = self.path("tenx.h5")
        write_10x(self.tenx, self)
        self.by_hand = self.path("by_hand.h5ad")  # sorted indices, float32 counts
        write_h5ad(self.by_hand, self)
        self._anndata = {}

    def path(self, name):
        return os.path.join(self.dir, name)

    def anndata(self, which, layout="csr"):
        """The counts written by anndata `which` as `layout` (skips the test where that anndata
        cannot be had)."""
        key = (which, layout)
        if key not in self._anndata:
            python, why = anndata_python(which)
            if python is None:
                raise unittest.SkipTest(why)
            out = self.path(f"{which}_{layout}.h5ad")
            anndata_write(which, self.npz, [(out, layout)])
            self._anndata[key] = out
        return self._anndata[key]

    def transformed(self, keep=None, size_factor=1e4, log1p=True, x=None):
        """The counts as the transform makes them, in float64: each row scaled to size_factor
        over every gene (a row of total 0 stays zeros), log1p, the kept columns."""
        x = (self.x if x is None else x).astype(np.float64)
        if size_factor:
            total = x.sum(axis=1, keepdims=True)
            x = np.divide(x * size_factor, total, out=np.zeros_like(x), where=total > 0)
        if log1p:
            x = np.log1p(x)
        return x if keep is None else x[:, keep]


_atlas = None


def atlas():
    """The atlas every class shares, written once."""
    global _atlas
    if _atlas is None:
        _atlas = Atlas(cli_support.temp_dir())
    return _atlas


def losses(path):
    return [e["loss"] for e in metrics(path) if e["event"] == "step"]


TRAIN = ["--layers", "12,4", "--epochs", str(EPOCHS), "--batch-size", str(BATCH), "--lr", "0.01",
         "--deterministic", "--log-every", "1"]


def transform_args(features):
    return ["--size-factor", "10000", "--transform", "log1p", "--features", features,
            "--normalize", "standard"]


class SingleCellTest(cli_support.BinaryTest):
    @classmethod
    def setUpClass(cls):
        cls.a = atlas()

    def train(self, data, dataset, ranks=2, extra=(), name="run", quiet=True):
        """Trains on `data`; returns (checkpoint, step losses, stdout)."""
        ck, m = self.path(f"{name}.h5"), self.path(f"{name}.jsonl")
        for p in (ck, m):
            if os.path.exists(p):
                os.remove(p)
        data = [data] if isinstance(data, str) else list(data)
        rc, out, err = run(["train", "--data"] + data + ["--dataset", dataset, "--checkpoint", ck,
                                                         "--metrics", m] + TRAIN + list(extra)
                           + (["--quiet"] if quiet else []), ranks)
        self.assertEqual(rc, 0, err)
        return ck, losses(m), out

    def encode(self, model, data, dataset, out, ranks=2, extra=()):
        data = [data] if isinstance(data, str) else list(data)
        rc, _, err = run(["encode", "--model", model, "--data"] + data + ["--dataset", dataset,
                                                                          "--out", out]
                         + list(extra), ranks)
        self.assertEqual(rc, 0, err)
        return out


# --- the same counts in every layout -------------------------------------------------------------

class SameCountsSameLosses(SingleCellTest):
    """The same counts in each layout give bit-identical step losses under --deterministic."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.args = transform_args("@" + cls.a.genes_txt)
        ref = cli_support.temp_dir()
        m = os.path.join(ref, "ref.jsonl")
        rc, _, err = run(["train", "--data", cls.a.tenx, "--dataset", "matrix", "--checkpoint",
                          os.path.join(ref, "ref.h5"), "--metrics", m] + TRAIN + cls.args, 1)
        assert rc == 0, err
        cls.reference = losses(m)
        assert len(cls.reference) == EPOCHS * CELLS // BATCH, cls.reference

    def same_on_one_to_three_ranks(self, data, dataset, ranks=(1, 2, 3), args=None):
        for r in ranks:
            _, got, _ = self.train(data, dataset, r, args or self.args, name=f"r{r}")
            self.assertEqual(got, self.reference, f"{data}:{dataset} on {r} ranks")

    def test_10x_and_csr_by_hand_with_unsorted_indices(self):
        self.same_on_one_to_three_ranks(self.a.tenx, "matrix", (2, 3))
        unsorted = self.path("unsorted.h5ad")
        write_h5ad(unsorted, self.a, unsorted=True)
        with h5py.File(unsorted, "r") as f:  # really out of order
            g = f["X"]
            row = g["indices"][g["indptr"][0]:g["indptr"][1]]
            self.assertTrue(np.all(np.diff(row) < 0), row)
        self.same_on_one_to_three_ranks(unsorted, "X")
        self.same_on_one_to_three_ranks(self.a.by_hand, "X", (2,))

    def test_10x_v2_layout(self):
        v2 = self.path("v2.h5")
        write_10x(v2, self.a, v2=True)
        self.same_on_one_to_three_ranks(v2, "GRCh38", (2,))

    def test_in_windows_of_blocks(self):
        # Rows read a block at a time into windows: the layout decides the batches, so the
        # reference is the 10x file in the same windows, on one rank.
        windows = ["--window-rows", "64", "--data-block-rows", "16"]
        _, reference, _ = self.train(self.a.tenx, "matrix", 1, self.args + windows, name="w")
        self.assertNotEqual(reference, self.reference)
        unsorted = self.path("unsorted.h5ad")
        write_h5ad(unsorted, self.a, unsorted=True, indices=np.int64)
        for r in (2, 3):
            _, got, _ = self.train(unsorted, "X", r, self.args + windows, name=f"w{r}")
            self.assertEqual(got, reference, f"{r} ranks")

    def test_csr_written_by_debian_and_pypi_anndata(self):
        for which in WRITERS:
            with self.subTest(anndata=which):
                self.same_on_one_to_three_ranks(self.a.anndata(which), "X")

    def test_layers_counts_and_raw_x(self):
        # Written by hand: the counts in layers/counts beside another X; raw/X with raw/var.
        layers, raw = self.path("layers.h5ad"), self.path("raw.h5ad")
        write_h5ad(layers, self.a, group="layers/counts")
        write_h5ad(raw, self.a, group="raw/X")
        self.same_on_one_to_three_ranks(layers, "layers/counts", (2,))
        self.same_on_one_to_three_ranks(raw, "raw/X", (2,))
        # And as anndata writes them.
        for which in WRITERS:
            with self.subTest(anndata=which):
                self.same_on_one_to_three_ranks(self.a.anndata(which, "layers"), "layers/counts",
                                                (3,))
                self.same_on_one_to_three_ranks(self.a.anndata(which, "raw"), "raw/X", (2,))

    def test_index_and_value_types(self):
        kinds = [(np.int32, np.int32, np.float32), (np.int64, np.int64, np.int32),
                 (np.uint32, np.uint32, np.uint16), (np.int32, np.int64, np.float64),
                 (np.uint32, np.int64, np.int64)]
        for indices, indptr, data in kinds:
            with self.subTest(indices=indices.__name__, indptr=indptr.__name__,
                              data=data.__name__):
                path = self.path(f"{indices.__name__}_{indptr.__name__}_{data.__name__}.h5ad")
                write_h5ad(path, self.a, indices=indices, indptr=indptr, data=data)
                with h5py.File(path, "r") as f:
                    self.assertEqual(f["X/indices"].dtype, indices)
                    self.assertEqual(f["X/data"].dtype, data)
                self.same_on_one_to_three_ranks(path, "X", (2,))
        tenx = self.path("tenx_uint32.h5")
        write_10x(tenx, self.a, data=np.float32, indices=np.uint32, indptr=np.int32)
        self.same_on_one_to_three_ranks(tenx, "matrix", (3,))

    def test_features_by_gene_id(self):
        # 10x's features/id and AnnData's var gene_ids name the same genes as their names.
        self.same_on_one_to_three_ranks(self.a.tenx, "matrix", (2,),
                                        transform_args("@" + self.a.ids_txt))
        self.same_on_one_to_three_ranks(self.a.by_hand, "X", (2,),
                                        transform_args("@" + self.a.ids_txt))

    def test_rows_of_several_files_as_their_concatenation(self):
        first, second = self.path("first.h5ad"), self.path("second.h5ad")
        write_h5ad(first, self.a, x=self.a.csr[:100])
        write_h5ad(second, self.a, x=self.a.csr[100:], unsorted=True)
        # (the second file's obs names start again at cell000: names of rows need not differ)
        self.same_on_one_to_three_ranks([first, second], "X", (1, 3))

    def test_dense_within_1e_5(self):
        def close(path):
            with h5py.File(path, "r") as f:
                self.assertIsInstance(f["X"], h5py.Dataset, path)
            for r in (1, 3):
                _, got, _ = self.train(path, "X", r, self.args, name=f"dense{r}")
                np.testing.assert_allclose(got, self.reference, rtol=1e-5,
                                           err_msg=f"{path} on {r} ranks")
        dense = self.path("dense.h5ad")
        write_h5ad(dense, self.a, dense=True)
        close(dense)
        for which in WRITERS:
            with self.subTest(anndata=which):
                close(self.a.anndata(which, "dense"))


# --- the transform and its statistics against numpy ----------------------------------------------

class TransformAgainstNumpy(SingleCellTest):
    """The statistics of the transformed rows, the stored /transform, and what evaluate gives."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.dir0 = cli_support.temp_dir()
        cls.model = os.path.join(cls.dir0, "model.h5")
        cls.start = os.path.join(cls.dir0, "start.jsonl")
        rc, cls.out, err = run(["train", "--data", cls.a.by_hand, "--dataset", "X",
                                "--checkpoint", cls.model, "--metrics", cls.start]
                               + TRAIN + transform_args("@" + cls.a.genes_txt), 3)
        assert rc == 0, err
        cls.expect = cls.a.transformed(cls.a.keep)

    def test_statistics_are_numpys_of_the_transformed_columns(self):
        with h5py.File(self.model, "r") as f:
            offset, scale = f["normalization/offset"][()], f["normalization/scale"][()]
        self.assertEqual(offset.shape, (20,))
        # The reference from the scipy CSR, not from the dense copy the atlas began with.
        x = self.a.csr.astype(np.float64)
        total = np.asarray(x.sum(axis=1)).ravel()
        factor = np.divide(1e4, total, out=np.zeros_like(total), where=total > 0)
        t = sp.diags(factor) @ x
        t.data = np.log1p(t.data)
        t = t.tocsc()[:, self.a.keep].toarray()
        np.testing.assert_allclose(t, self.expect, rtol=1e-12)
        np.testing.assert_allclose(offset, t.mean(axis=0), rtol=1e-6)
        self.assertTrue(np.all(t.std(axis=0) > 0))
        np.testing.assert_allclose(scale, t.std(axis=0, ddof=0), rtol=1e-6)

    def test_minmax_statistics_and_pca_store_the_same_transform(self):
        ck, _, _ = self.train(self.a.tenx, "matrix", 2,
                              ["--size-factor", "500", "--transform", "log1p", "--features",
                               "@" + self.a.ids_txt, "--normalize", "minmax"])
        t = self.a.transformed(self.a.keep, size_factor=500)
        with h5py.File(ck, "r") as f:
            np.testing.assert_allclose(f["normalization/offset"][()], t.min(axis=0), rtol=1e-6)
            np.testing.assert_allclose(f["normalization/scale"][()], np.ptp(t, axis=0),
                                       rtol=1e-6)
            self.assertEqual(f["transform"].attrs["size_factor"], 500)
        pca = self.path("pca.h5")
        rc, out, err = run(["pca", "--data", self.a.tenx, "--dataset", "matrix", "--components",
                            "3", "--size-factor", "500", "--transform", "log1p", "--features",
                            "@" + self.a.ids_txt, "--out", pca], 2)
        self.assertEqual(rc, 0, err)
        self.assertIn(f"1 of {CELLS} rows have a total of 0", out)
        with h5py.File(pca, "r") as f, h5py.File(ck, "r") as g:
            self.assertEqual(f.attrs["format_version"], 6)
            self.assertEqual(dict(f["transform"].attrs), dict(g["transform"].attrs))
            np.testing.assert_array_equal(f["transform/columns"][()], self.a.keep)
            np.testing.assert_allclose(f["pca/mean"][()], t.mean(axis=0), rtol=1e-6)
        # encode takes the transform from the PCA model: codes = (T(x) - mean) . components
        codes = self.encode(pca, self.a.by_hand, "X", self.path("pca_codes.h5"))
        with h5py.File(codes, "r") as f:
            np.testing.assert_allclose(f["codes"][()], forward(pca, t, encoder_only=True),
                                       rtol=1e-4, atol=1e-4)

    def test_the_stored_transform(self):
        with h5py.File(self.model, "r") as f:
            self.assertEqual(f.attrs["format_version"], 6)
            g = f["transform"]
            self.assertEqual(dict(g.attrs), {"size_factor": 10000.0, "scale": "log1p",
                                             "features": "@" + self.a.genes_txt,
                                             "stored_columns": GENES})
            self.assertEqual(sorted(g.keys()), ["columns", "names"])
            np.testing.assert_array_equal(g["columns"][()], self.a.keep)
            self.assertEqual([n.decode() for n in g["names"][()]],
                             [self.a.genes[j] for j in self.a.keep])
            self.assertEqual(f["model"].attrs["input_dim"], 20)
        # inspect, and the metrics' start event, show the configuration with the options.
        rc, text, err = run(["inspect", self.model], ranks=0)
        self.assertEqual(rc, 0, err)
        config = metrics(self.start)[0]["config"].splitlines()
        for line in ("size-factor = 10000", 'transform = "log1p"',
                     f'features = "@{self.a.genes_txt}"'):
            self.assertIn(line, [l.strip() for l in text.splitlines()])
            self.assertIn(line, config)
        # Without a transform, no group and the format before it.
        plain = self.path("plain.h5")
        rc, _, err = run(["train", "--data", self.a.by_hand, "--dataset", "X", "--layers", "4",
                          "--normalize", "standard", "--checkpoint", plain, "--quiet"], 1)
        self.assertEqual(rc, 0, err)
        with h5py.File(plain, "r") as f:
            self.assertNotIn("transform", f)
            self.assertLess(f.attrs["format_version"], 6)

    def test_a_row_of_total_zero_stays_zeros(self):
        self.assertIn(f"counts: size factor 10000, log1p, 20 of {GENES} columns "
                      f"(@{self.a.genes_txt}); 1 of {CELLS} rows have a total of 0 and stay "
                      "zeros", self.out)
        self.assertEqual(self.a.x[ZERO_ROW].sum(), 0)
        # Its codes are those of a row of zeros.
        codes = self.encode(self.model, self.a.tenx, "matrix", self.path("codes.h5"))
        with h5py.File(self.model, "r") as f:
            offset, scale = f["normalization/offset"][()], f["normalization/scale"][()]
        with h5py.File(codes, "r") as f:
            c = f["codes"][()]
        expect = forward(self.model, (self.expect - offset) / scale, encoder_only=True)
        np.testing.assert_allclose(c, expect, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(c[ZERO_ROW], forward(self.model, -offset / scale, True),
                                   rtol=1e-5, atol=1e-5)
        # Two more such cells, on 2 ranks: counted wherever they are.
        x = self.a.x.copy()
        x[[3, CELLS - 2]] = 0
        path = self.path("zeros.h5ad")
        write_h5ad(path, self.a, x=sp.csr_matrix(x))
        _, got, out = self.train(path, "X", 2, ["--size-factor", "100"], quiet=False)
        self.assertIn(f"3 of {CELLS} rows have a total of 0 and stay zeros", out)
        self.assertTrue(np.all(np.isfinite(got)))

    def test_evaluate_in_transformed_units(self):
        rec = self.path("rec.h5")
        rc, out, err = run(["evaluate", "--model", self.model, "--data", self.a.tenx,
                            "--dataset", "matrix", "--reconstruct", rec], 2)
        self.assertEqual(rc, 0, err)
        result = json.loads(out)
        with h5py.File(self.model, "r") as f:
            offset, scale = f["normalization/offset"][()], f["normalization/scale"][()]
        z = (self.expect - offset) / scale
        y = forward(self.model, z)
        restored = y * scale + offset
        with h5py.File(rec, "r") as f:
            self.assertEqual(f["reconstruction"].shape, (CELLS, 20))
            np.testing.assert_allclose(f["reconstruction"][()], restored, rtol=1e-4, atol=1e-4)
        expect = np.mean((restored - self.expect) ** 2)
        self.assertAlmostEqual(result["mse"], expect, delta=1e-5 * expect)
        expect = np.mean((y - z) ** 2)
        self.assertAlmostEqual(result["normalized_mse"], expect, delta=1e-5 * expect)
        self.assertEqual(result["rows"], CELLS)


# --- encode --out FILE.h5ad ----------------------------------------------------------------------

class EncodeToAnnData(SingleCellTest):
    """encode's AnnData output: the input's obs, the codes in obsm, read back by anndata."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.dir0 = cli_support.temp_dir()
        cls.model = os.path.join(cls.dir0, "model.h5")
        rc, _, err = run(["train", "--data", cls.a.tenx, "--dataset", "matrix", "--checkpoint",
                          cls.model] + TRAIN + transform_args("@" + cls.a.genes_txt), 2)
        assert rc == 0, err
        cls.codes = os.path.join(cls.dir0, "codes.h5")
        rc, _, err = run(["encode", "--model", cls.model, "--data", cls.a.tenx, "--dataset",
                          "matrix", "--out", cls.codes], 2)
        assert rc == 0, err
        with h5py.File(cls.codes, "r") as f:
            cls.expect = f["codes"][()]
        assert cls.expect.shape == (CELLS, 4)

    def h5py_view(self, path, key="X_aetrain"):
        """The codes and obs names as h5py sees them, and the file's top groups."""
        with h5py.File(path, "r") as f:
            self.assertEqual(f.attrs["encoding-type"], "anndata")
            obs = f["obs"]
            names = [n.decode() for n in obs[obs.attrs["_index"]][()]]
            self.assertEqual(len(f["var"][f["var"].attrs["_index"]]), 0)
            return f["obsm"][key][()], names, sorted(f.keys())

    def test_codes_and_obs_of_h5ad_inputs_read_back_by_both_anndatas(self):
        inputs = [("by hand", self.a.by_hand)]
        for which in WRITERS:
            python, why = anndata_python(which)
            if python:
                inputs.append((f"{which} anndata", self.a.anndata(which)))
        readers = [w for w in WRITERS if anndata_python(w)[0]]
        outs = {}
        for name, path in inputs:
            out = self.encode(self.model, path, "X", self.path(f"{name.replace(' ', '_')}.h5ad"),
                              ranks=3)
            codes, names, groups = self.h5py_view(out)
            np.testing.assert_array_equal(codes, self.expect, err_msg=name)
            self.assertEqual(names, self.a.cells)
            self.assertEqual(groups, ["layers", "obs", "obsm", "obsp", "uns", "var", "varm",
                                      "varp"])
            outs[name] = (path, out)
        for which in WRITERS:
            with self.subTest(reader=which):
                if which not in readers:
                    self.skipTest(anndata_python(which)[1])
                for name, (path, out) in outs.items():
                    got = anndata_read(which, path, out)
                    given, written = got[path], got[out]
                    if "error" in given:
                        # PyPI's nullable strings, which Debian's anndata cannot read: nor the
                        # copy of them.
                        self.assertEqual((which, name), ("debian", "pypi anndata"), given)
                        self.assertIn("nullable-string-array", written["error"])
                        continue
                    self.assertNotIn("error", written, name)
                    self.assertEqual(written["shape"], [CELLS, 0], name)
                    self.assertEqual(written["obs_names"], given["obs_names"], name)
                    self.assertEqual(written["obs"], given["obs"], name)
                    self.assertEqual(written["obs"]["cell_type"]["dtype"], "category")
                    self.assertEqual(written["obs"]["cell_type"]["values"], self.a.cell_type)
                    if name == "pypi anndata":
                        self.assertEqual(written["obs"]["donor"]["dtype"], "string")
                    if name != "by hand":
                        self.assertEqual(written["obs"]["doublet"]["dtype"], "boolean")
                        self.assertEqual(written["obs"]["doublet"]["values"][5], "<NA>")
                    self.assertEqual(list(written["obsm"]), ["X_aetrain"])
                    self.assertEqual(written["obsm_dtype"]["X_aetrain"], "float32")
                    np.testing.assert_array_equal(np.array(written["obsm"]["X_aetrain"]),
                                                  self.expect, err_msg=name)

    def test_10x_input_gives_the_barcodes_and_the_same_codes(self):
        out = self.encode(self.model, self.a.tenx, "matrix", self.path("tenx.h5ad"), ranks=3)
        codes, names, _ = self.h5py_view(out)
        self.assertEqual(names, self.a.barcodes)
        np.testing.assert_array_equal(codes, self.expect)
        # and the same codes from the h5ad file of the same counts
        out2 = self.encode(self.model, self.a.by_hand, "X", self.path("h5ad.h5"), ranks=1)
        with h5py.File(out2, "r") as f:
            np.testing.assert_array_equal(f["codes"][()], self.expect)
            self.assertNotIn("obs", f)  # an HDF5 --out keeps the old layout
        for which in WRITERS:
            with self.subTest(reader=which):
                if not anndata_python(which)[0]:
                    self.skipTest(anndata_python(which)[1])
                got = anndata_read(which, out)[out]
                self.assertEqual(got["obs_names"], self.a.barcodes)
                self.assertEqual(got["obs"], {})
                self.assertEqual(got["shape"], [CELLS, 0])
                np.testing.assert_array_equal(np.array(got["obsm"]["X_aetrain"]), self.expect)

    def test_plain_hdf5_and_several_files_name_their_rows(self):
        plain = self.path("plain.h5")  # a CSR group without obs: the rows are numbered
        with h5py.File(plain, "w") as f:
            csr_group(f, "X", self.a.csr)
        out = self.encode(self.model, plain, "X", self.path("plain.h5ad"))
        codes, names, _ = self.h5py_view(out)
        self.assertEqual(names, [str(i) for i in range(CELLS)])
        np.testing.assert_array_equal(codes, self.expect)
        dense = self.path("dense.h5")  # a dense dataset: the model's columns by position
        with h5py.File(dense, "w") as f:
            f["counts"] = self.a.x.astype(np.uint16)
        out = self.encode(self.model, dense, "counts", self.path("dense.h5ad"), ranks=3)
        codes, names, _ = self.h5py_view(out)
        self.assertEqual(names, [str(i) for i in range(CELLS)])
        np.testing.assert_array_equal(codes, self.expect)
        first, second = self.path("first.h5ad"), self.path("second.h5ad")
        write_h5ad(first, self.a, x=self.a.csr[:100])
        write_h5ad(second, self.a, x=self.a.csr[100:])
        out = self.encode(self.model, [first, second], "X", self.path("two.h5ad"), ranks=3)
        codes, names, _ = self.h5py_view(out)
        self.assertEqual(names, self.a.cells[:100] + self.a.cells[:CELLS - 100])
        np.testing.assert_array_equal(codes, self.expect)
        with h5py.File(out, "r") as f:
            self.assertEqual(list(f["obs"].keys()), ["_index"])  # names alone

    def test_into_an_existing_anndata_file(self):
        # The codes join an AnnData file of the same cells (here a copy of the input) beside
        # what it holds; another key beside them; the same key again only with --overwrite.
        target = self.path("atlas.h5ad")
        shutil.copy(self.a.by_hand, target)
        self.encode(self.model, self.a.by_hand, "X", target)
        self.encode(self.model, self.a.tenx, "matrix", target, extra=["--obsm-key", "X_again"])
        self.assert_fails(["encode", "--model", self.model, "--data", self.a.by_hand,
                           "--dataset", "X", "--out", target], 2,
                          f"{target}: /obsm/X_aetrain exists; pass --overwrite to replace it")
        with h5py.File(target, "r") as f, h5py.File(self.a.by_hand, "r") as g:
            self.assertEqual(sorted(f["obsm"].keys()), ["X_aetrain", "X_again"])
            for key in ("X_again", "X_aetrain"):
                np.testing.assert_array_equal(f["obsm"][key][()], self.expect)
            for name in ("X/data", "X/indices", "X/indptr", "obs/_index", "var/_index",
                         "var/highly_variable"):
                np.testing.assert_array_equal(f[name][()], g[name][()], name)
        # Refused (exit 2, nothing changed): a file of other cells, a file that is not AnnData.
        fewer = self.path("fewer.h5ad")
        write_h5ad(fewer, self.a, x=self.a.csr[:100])
        plain = self.path("plain.h5ad")
        with h5py.File(plain, "w") as f:
            f["x"] = np.arange(3)
        for path, needle in ((fewer, "holds 100 cells (obs); the codes are of 240 rows"),
                             (plain, "is not an AnnData file with obs and obsm")):
            before = cli_support.sha256(path)
            self.assert_fails(["encode", "--model", self.model, "--data", self.a.by_hand,
                               "--dataset", "X", "--out", path], 2, f"{path}: {needle}")
            self.assertEqual(cli_support.sha256(path), before)

    def test_an_obs_that_does_not_name_every_row_is_refused(self):
        # Copied as it is, such an obs would make a file anndata refuses to open.
        short = self.path("short_obs.h5ad")
        shutil.copy(self.a.by_hand, short)
        with h5py.File(short, "r+") as f:
            names = [n.decode() for n in f["obs/_index"][()]]
            del f["obs"]
            dataframe(f, "obs", names[:-1])
        out = self.path("short_codes.h5ad")
        self.assert_fails(["encode", "--model", self.model, "--data", short, "--dataset", "X",
                           "--out", out], 3,
                          f"{short}: X: names {CELLS - 1} rows (its obs index or barcodes) but "
                          f"holds {CELLS}")
        self.assertFalse(os.path.exists(out))

    def test_obsm_key_and_out_dataset(self):
        out = self.encode(self.model, self.a.by_hand, "X", self.path("key.h5ad"),
                          extra=["--obsm-key", "X_scvi_like"])
        codes, _, _ = self.h5py_view(out, "X_scvi_like")
        np.testing.assert_array_equal(codes, self.expect)
        with h5py.File(out, "r") as f:
            self.assertEqual(list(f["obsm"].keys()), ["X_scvi_like"])
        refused = self.path("refused.h5ad")
        self.assert_fails(["encode", "--model", self.model, "--data", self.a.by_hand,
                           "--dataset", "X", "--out", refused, "--out-dataset", "/codes"], 2,
                          "--out-dataset is for HDF5 outputs")
        self.assert_fails(["encode", "--model", self.model, "--data", self.a.by_hand,
                           "--dataset", "X", "--out", self.path("codes.h5"), "--obsm-key",
                           "X_a"], 2, "--obsm-key is for an .h5ad --out")
        self.assertEqual(os.listdir(self.dir), ["key.h5ad"])


# --- columns found by name -----------------------------------------------------------------------

class ColumnsByName(SingleCellTest):
    """A model trained on an h5ad file with --features var:highly_variable encodes a 10x file of
    the same genes in another order: its columns are found by name."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.dir0 = cli_support.temp_dir()
        cls.order = np.random.default_rng(5).permutation(GENES)
        cls.shuffled = os.path.join(cls.dir0, "shuffled_10x.h5")
        write_10x(cls.shuffled, cls.a, order=cls.order)

    def same_codes(self, h5ad):
        model = self.path("hv.h5")
        if os.path.exists(model):
            os.remove(model)
        rc, _, err = run(["train", "--data", h5ad, "--dataset", "X", "--checkpoint", model]
                         + TRAIN + transform_args("var:highly_variable"), 2)
        self.assertEqual(rc, 0, err)
        with h5py.File(model, "r") as f:
            np.testing.assert_array_equal(f["transform/columns"][()], np.flatnonzero(self.a.hv))
            self.assertEqual(f["transform"].attrs["features"], "var:highly_variable")
        codes = {}
        for name, data, dataset in (("h5ad", h5ad, "X"), ("tenx", self.a.tenx, "matrix"),
                                    ("shuffled", self.shuffled, "matrix")):
            out = self.encode(model, data, dataset, self.path(f"{name}.h5"), ranks=3,
                              extra=["--overwrite"])
            with h5py.File(out, "r") as f:
                codes[name] = f["codes"][()]
        np.testing.assert_array_equal(codes["tenx"], codes["h5ad"])
        np.testing.assert_array_equal(codes["shuffled"], codes["h5ad"])
        with h5py.File(model, "r") as f:
            offset, scale = f["normalization/offset"][()], f["normalization/scale"][()]
        z = (self.a.transformed(np.flatnonzero(self.a.hv)) - offset) / scale
        np.testing.assert_allclose(codes["h5ad"], forward(model, z, encoder_only=True),
                                   rtol=1e-5, atol=1e-5)
        return model

    def test_var_highly_variable_by_hand(self):
        self.same_codes(self.a.by_hand)

    def test_var_highly_variable_by_anndata(self):
        for which in WRITERS:
            with self.subTest(anndata=which):
                self.same_codes(self.a.anndata(which))
                # pandas' nullable booleans, as anndata writes them
                ck, _, _ = self.train(self.a.anndata(which), "X", 2,
                                      transform_args("var:hv_nullable"))
                with h5py.File(ck, "r") as f:
                    np.testing.assert_array_equal(f["transform/columns"][()],
                                                  np.flatnonzero(self.a.hv))
                with h5py.File(self.a.anndata(which), "r") as f:
                    self.assertEqual(f["var/hv_nullable"].attrs["encoding-type"],
                                     "nullable-boolean")

    def test_validation_rows_from_a_10x_file_of_another_gene_order(self):
        def val_losses(val, dataset):
            _, _, out = self.train(self.a.by_hand, "X", 2, transform_args("var:highly_variable")
                                   + ["--val-data", val, "--val-dataset", dataset],
                                   name="val", quiet=False)
            return [float(line.split("val_loss")[1].split()[0]) for line in out.splitlines()
                    if "val_loss" in line]
        same = val_losses(self.a.by_hand, "X")
        self.assertEqual(len(same), EPOCHS)
        self.assertEqual(val_losses(self.shuffled, "matrix"), same)

    def test_a_nullable_boolean_column(self):
        path = self.path("nullable.h5ad")
        write_h5ad(path, self.a, var_columns={"hv_nullable": ("nullable-boolean", self.a.hv,
                                                              np.zeros(GENES, bool))})
        ck, _, _ = self.train(path, "X", 2, transform_args("var:hv_nullable"))
        with h5py.File(ck, "r") as f:
            np.testing.assert_array_equal(f["transform/columns"][()], np.flatnonzero(self.a.hv))

    def test_a_file_without_one_of_the_models_genes(self):
        model = self.same_codes(self.a.by_hand)
        missing = int(np.flatnonzero(self.a.hv)[2])
        fewer = self.path("fewer_10x.h5")
        write_10x(fewer, self.a, order=[j for j in range(GENES) if j != missing])
        out = self.path("fewer_codes.h5")
        line = self.assert_fails(["encode", "--model", model, "--data", fewer, "--dataset",
                                  "matrix", "--out", out], 3,
                                 f"{fewer}: matrix: has no column named {self.a.genes[missing]} "
                                 f"(1 of the {self.a.hv.sum()} names of the model's columns)")
        self.assertFalse(os.path.exists(out), line)


    def test_genes_that_share_a_symbol_go_by_their_ids(self):
        # Real 10x files repeat gene symbols; their ids are unique. A model of genes picked by
        # id keeps the ids, and encodes those very columns; a symbol that names two genes is
        # refused, not resolved to the first.
        x = sp.csr_matrix(np.random.default_rng(3).poisson(2.0, (40, 6)).astype(np.int32))
        path = self.path("dup10x.h5")
        with h5py.File(path, "w") as f:
            m = f.create_group("matrix")
            m["data"], m["indices"] = x.data, x.indices.astype(np.int64)
            m["indptr"] = x.indptr.astype(np.int64)
            m["shape"] = np.array([6, 40], np.int32)
            m["barcodes"] = np.array([f"c{i}".encode() for i in range(40)])
            m["features/name"] = np.array([b"A", b"B", b"DUP", b"C", b"DUP", b"D"])
            m["features/id"] = np.array([f"ID{j}".encode() for j in range(6)])
        ids, symbol = self.path("ids.txt"), self.path("symbol.txt")
        with open(ids, "w") as f:
            f.write("ID2\nID4\n")
        with open(symbol, "w") as f:
            f.write("DUP\n")
        model = self.path("dup_model.h5")
        rc, _, err = run(["train", "--data", path, "--dataset", "matrix", "--layers", "2",
                          "--transform", "log1p", "--features", "@" + ids, "--epochs", "2",
                          "--batch-size", "10", "--output-activation", "linear",
                          "--checkpoint", model, "--quiet"], 1)
        self.assertEqual(rc, 0, err)
        with h5py.File(model, "r") as f:
            np.testing.assert_array_equal(f["transform/columns"][()], [2, 4])
            self.assertEqual([n.decode() for n in f["transform/names"][()]], ["ID2", "ID4"])
        out = self.encode(model, path, "matrix", self.path("dup_codes.h5"), ranks=1)
        with h5py.File(out, "r") as f:
            codes = f["codes"][()]
        z = np.log1p(x.toarray()[:, [2, 4]].astype(np.float64))
        np.testing.assert_allclose(codes, forward(model, z, encoder_only=True), rtol=1e-5,
                                   atol=1e-6)
        line = self.assert_fails(["train", "--data", path, "--dataset", "matrix", "--layers", "2",
                                  "--transform", "log1p", "--features", "@" + symbol,
                                  "--checkpoint", self.path("dup_refused.h5")], 3,
                                 f"{path}: matrix: names several columns DUP")
        self.assertIn("id of its own", line)
        self.assertFalse(os.path.exists(self.path("dup_refused.h5")))


# --- bad inputs ----------------------------------------------------------------------------------

class BadInputs(SingleCellTest):
    """Each bad file or option: exit 3, one line naming the file, the dataset and the first bad
    row, and no checkpoint (nor codes) written."""

    ROWS = 30

    def setUp(self):
        super().setUp()
        x = np.random.default_rng(9).poisson(1.5, (self.ROWS, 12)).astype(np.float32)
        x[:, 0] += 1  # every row holds at least 2 values, the first in column 0
        x[:, 5] += 1
        self.x = sp.csr_matrix(x)

    def arrays(self):
        return self.x.data.copy(), self.x.indices.copy(), self.x.indptr.copy()

    def write(self, name, data, indices, indptr, shape=None, tenx=False, **attrs):
        path = self.path(name)
        with h5py.File(path, "w") as f:
            g = f.create_group("matrix" if tenx else "X")
            if tenx:
                g["shape"] = np.array(shape or (12, self.ROWS), np.int64)
                strings(g, "barcodes", [f"c{i}" for i in range(self.ROWS)], None)
            else:
                g.attrs["encoding-type"] = attrs.get("encoding", "csr_matrix")
                g.attrs["encoding-version"] = "0.1.0"
                g.attrs["shape"] = np.array(shape or (self.ROWS, 12), np.int64)
            g["data"], g["indices"], g["indptr"] = data, indices, indptr
        return path

    def refused(self, path, needle, dataset="X", args=("--transform", "log1p"), row=None,
                ranks=(2,), commands=("train",)):
        """Each command on `ranks` refuses `path` with exit 3 and one line holding
        "PATH: DATASET: " and `needle`, and writes nothing."""
        before = sorted(os.listdir(self.dir))
        model = self.path("model.h5")
        for command in commands:
            for r in ranks:
                if command == "train":
                    cmd = ["train", "--data", path, "--dataset", dataset, "--layers", "4",
                           "--epochs", "1", "--batch-size", "10", "--checkpoint",
                           self.path("ck.h5")] + list(args)
                else:
                    cmd = ["encode", "--model", model, "--data", path, "--dataset", dataset,
                           "--out", self.path("codes.h5ad")]
                line = self.assert_fails(cmd, 3, needle, ranks=r)
                self.assertIn(f"{path}: {dataset}: ", line)
                if row is not None:
                    self.assertIn(f": row {row}", line)
                self.assertEqual(sorted(os.listdir(self.dir)), before, f"{command} on {r}")
        return line

    def encoder(self):
        """A model of 12 inputs with log1p, for encode."""
        good = self.write("good.h5", *self.arrays())
        rc, _, err = run(["train", "--data", good, "--dataset", "X", "--layers", "4",
                          "--transform", "log1p", "--checkpoint", self.path("model.h5"),
                          "--quiet"], 1)
        self.assertEqual(rc, 0, err)

    def test_indptr_decreasing(self):
        data, indices, indptr = self.arrays()
        indptr[8] = indptr[7] - 1
        path = self.write("decreasing.h5", data, indices, indptr)
        self.encoder()
        self.refused(path, f"row 7: indptr decreases ({indptr[7]} then {indptr[8]})", row=7,
                     ranks=(1, 3), commands=("train", "encode"))

    def test_indptr_ending_past_the_data(self):
        data, indices, indptr = self.arrays()
        indptr[-1] += 4
        path = self.write("ends_past.h5", data, indices, indptr)
        self.refused(path, f"indptr ends at {indptr[-1]}, past the data ({len(data)} values)")

    def test_indptr_past_the_data_inside(self):
        data, indices, indptr = self.arrays()
        indptr[20] = len(data) + 3
        path = self.write("inside_past.h5", data, indices, indptr)
        self.refused(path, f"row 19: indptr {len(data) + 3} is past the data ({len(data)} "
                     "values)", row=19, args=("--normalize", "standard"), ranks=(1, 2))

    def test_column_index_out_of_range(self):
        data, indices, indptr = self.arrays()
        indices[indptr[9]] = 12
        path = self.write("range.h5", data, indices, indptr)
        self.encoder()
        self.refused(path, "row 9: column index 12 is out of range (12 columns)", row=9,
                     commands=("train", "encode"))
        indices[indptr[9]] = -1
        path = self.write("negative_index.h5", data, indices.astype(np.int64), indptr)
        self.refused(path, "row 9: column index -1 is out of range (12 columns)", row=9)
        # 10x: a gene index past the genes
        data, indices, indptr = self.arrays()
        indices[indptr[4] + 1] = 40
        path = self.write("tenx_range.h5", data, indices, indptr, tenx=True)
        self.refused(path, "row 4: column index 40 is out of range (12 columns)", "matrix", row=4)

    def test_a_row_read_again_is_not_its_own_duplicate(self):
        # Column 11 only in row 0: in windows over several epochs the reader meets row 0 again,
        # and its column 11 is still the last one it saw there.
        x = self.x.toarray()
        x[:, 11] = 0
        x[0, 11] = 3
        path = self.write("again.h5", *(lambda c: (c.data, c.indices, c.indptr))(sp.csr_matrix(x)))
        rc, out, err = run(["train", "--data", path, "--dataset", "X", "--layers", "4",
                            "--transform", "log1p", "--normalize", "standard",
                            "--data-block-rows", "5", "--window-rows", "10", "--epochs", "4",
                            "--batch-size", "5"], 2)
        self.assertEqual(rc, 0, err)
        self.assertIn("epoch 4/4", out)

    def test_a_run_refused_while_reading_leaves_the_metrics_as_they_were(self):
        # The bad row is found after the metrics file is opened: a new file goes again, and an
        # earlier run's file that --overwrite would replace keeps its lines.
        data, indices, indptr = self.arrays()
        indices[indptr[7] + 1] = indices[indptr[7]]
        path = self.write("twice_metrics.h5", data, indices, indptr)
        metrics = self.path("m.jsonl")
        args = ["train", "--data", path, "--dataset", "X", "--layers", "4", "--transform",
                "log1p", "--checkpoint", self.path("ck.h5"), "--metrics", metrics]
        self.assert_fails(args, 3, "row 7: column index")
        self.assertFalse(os.path.exists(metrics))
        with open(metrics, "w") as f:
            f.write('{"event": "start"}\n')
        self.assert_fails(args + ["--overwrite"], 3, "row 7: column index")
        with open(metrics) as f:
            self.assertEqual(f.read(), '{"event": "start"}\n')
        self.assertFalse(os.path.exists(self.path("ck.h5")))

    def test_column_index_twice_in_a_row(self):
        data, indices, indptr = self.arrays()
        indices[indptr[11] + 1] = indices[indptr[11]]
        path = self.write("twice.h5", data, indices, indptr)
        self.refused(path, f"row 11: column index {indices[indptr[11]]} appears twice", row=11,
                     ranks=(1, 2, 3))
        # the same index in two rows is no duplicate; out of order within a row is accepted
        data, indices, indptr = self.arrays()
        for r in range(self.ROWS):
            lo, hi = indptr[r], indptr[r + 1]
            indices[lo:hi], data[lo:hi] = indices[lo:hi][::-1].copy(), data[lo:hi][::-1].copy()
        path = self.write("reversed.h5", data, indices, indptr)
        rc, _, err = run(["train", "--data", path, "--dataset", "X", "--layers", "4",
                          "--transform", "log1p", "--quiet"], 2)
        self.assertEqual(rc, 0, err)

    def test_first_bad_row_of_any_rank(self):
        # Bad rows in the shares of two ranks: the first is named, on 1, 2 and 3 ranks.
        data, indices, indptr = self.arrays()
        for r in (26, 6):
            indices[indptr[r] + 1] = indices[indptr[r]]
        path = self.write("two_bad_rows.h5", data, indices, indptr)
        for args in (("--transform", "log1p"), ("--size-factor", "100", "--normalize",
                                                "standard")):
            self.refused(path, "row 6: column index 0 appears twice", row=6, args=args,
                         ranks=(1, 2, 3))

    def test_negative_counts(self):
        data, indices, indptr = self.arrays()
        data[indptr[13] + 1] = -2
        column = indices[indptr[13] + 1]
        path = self.write("negative.h5", data, indices, indptr)
        for args in (("--transform", "log1p"), ("--size-factor", "100"),
                     ("--size-factor", "100", "--transform", "log1p", "--normalize", "minmax")):
            self.refused(path, f"row 13, column {column} is negative", row=13, args=args,
                         ranks=(1, 3))
        # Without a count transform, negative values are numbers like any other.
        rc, _, err = run(["train", "--data", path, "--dataset", "X", "--layers", "4",
                          "--normalize", "standard", "--quiet"], 2)
        self.assertEqual(rc, 0, err)

    def test_negative_counts_by_encode(self):
        self.encoder()
        data, indices, indptr = self.arrays()
        data[indptr[22]] = -1
        path = self.write("negative_late.h5", data, indices, indptr)
        self.refused(path, "row 22, column 0 is negative", row=22, commands=("encode",),
                     ranks=(2, 3))

    def test_nan_and_infinite_counts(self):
        data, indices, indptr = self.arrays()
        for value, word in ((np.nan, "NaN"), (np.inf, "infinite")):
            data[indptr[24] + 1] = value
            path = self.write(f"{word}.h5", data, indices, indptr)
            self.refused(path, f"row 24, column {indices[indptr[24] + 1]} is {word}", row=24,
                         args=("--size-factor", "100", "--transform", "log1p"), ranks=(1, 3))

    def test_shape_disagreeing_with_the_arrays(self):
        data, indices, indptr = self.arrays()
        path = self.write("shape.h5", data, indices, indptr, shape=(self.ROWS + 1, 12))
        self.refused(path, f"its attribute shape says {self.ROWS + 1} rows, but indptr holds "
                     f"{self.ROWS + 1} entries")
        path = self.write("tenx_shape.h5", data, indices, indptr, shape=(12, self.ROWS - 2),
                         tenx=True)
        self.refused(path, f"its dataset shape says {self.ROWS - 2} rows, but indptr holds "
                     f"{self.ROWS + 1} entries", "matrix")

    def test_indices_and_data_of_different_lengths(self):
        data, indices, indptr = self.arrays()
        path = self.write("lengths.h5", data, indices[:-1], indptr)
        self.refused(path, f"indices holds {len(data) - 1} entries and data {len(data)}")

    def test_csc_h5ad_refused_with_the_way_to_csr(self):
        data, indices, indptr = self.arrays()
        path = self.write("csc.h5", data, indices, indptr, encoding="csc_matrix")
        self.refused(path, "is a CSC matrix (compressed by columns)")
        line = self.refused(path, "adata.X = adata.X.tocsr()")
        self.assertIn("adata.write_h5ad(path)", line)
        for which in WRITERS:
            with self.subTest(anndata=which):
                self.refused(self.a.anndata(which, "csc"), "store it as CSR")

    def test_integer_counts_need_a_transform_or_normalization(self):
        data, indices, indptr = self.arrays()
        path = self.write("ints.h5", data.astype(np.int32), indices, indptr)
        self.refused(path, "holds 32-bit integer values; integer data needs a count transform "
                     "or a normalization", args=())
        for args in (("--transform", "log1p"), ("--size-factor", "10"),
                     ("--normalize", "minmax")):
            rc, _, err = run(["train", "--data", path, "--dataset", "X", "--layers", "4",
                              "--quiet"] + list(args), 1)
            self.assertEqual(rc, 0, err)

    # --features

    def h5ad(self):
        path = self.path("genes.h5ad")
        write_h5ad(path, self.a, var_columns={
            "n_cells": np.arange(GENES), "none": np.zeros(GENES, bool),
            "kind": ("categorical", ["a", "b"] * (GENES // 2)),
            "hv_na": ("nullable-boolean", self.a.hv, np.arange(GENES) == 4)})
        return path

    def test_features_naming_unknown_genes(self):
        path = self.h5ad()
        listed = self.path("some_unknown.txt")
        with open(listed, "w") as f:
            f.write("Gene1\nNope1\nGene2\n# a comment\nNope2\n\nNope3\n")
        self.refused(path, f"has no column named Nope1, Nope2, Nope3 (3 of the 5 names of "
                     f"{listed})", args=("--features", "@" + listed))
        many = self.path("many_unknown.txt")
        with open(many, "w") as f:
            f.write("".join(f"X{i}\n" for i in range(8)) + "Gene3\n")
        self.refused(path, "has no column named X0, X1, X2, X3, X4 (and 3 more) (8 of the 9 "
                     f"names of {many})", args=("--features", "@" + many))
        # 10x: neither in features/name nor in features/id
        self.refused(self.a.tenx, f"has no column named Nope1, Nope2, Nope3 (3 of the 5 names "
                     f"of {listed})", "matrix", args=("--features", "@" + listed))

    def test_features_selecting_nothing(self):
        path = self.h5ad()
        self.refused(path, "--features var:none names none of its columns",
                     args=("--features", "var:none"))
        empty = self.path("empty.txt")
        with open(empty, "w") as f:
            f.write("# no gene\n\n")
        self.refused(path, f"--features @{empty} names none of its columns",
                     args=("--features", "@" + empty))
        # data that names no columns: nothing to find them by
        data, indices, indptr = self.arrays()
        plain = self.write("plain.h5", data, indices, indptr)
        self.refused(plain, f"names none of its columns, so --features @{self.a.genes_txt} "
                     "cannot find them", args=("--features", "@" + self.a.genes_txt))

    def test_features_var_column_not_boolean(self):
        path = self.h5ad()
        self.refused(path, "/var/n_cells holds 64-bit integer values, not booleans",
                     args=("--features", "var:n_cells"))
        self.refused(path, "/var/kind is not boolean (encoding categorical)",
                     args=("--features", "var:kind"))
        self.refused(path, "/var/hv_na is missing for column 4", args=("--features", "var:hv_na"))

    def test_features_var_column_missing(self):
        path = self.h5ad()
        self.refused(path, "/var has no column highly_varied (--features var:highly_varied)",
                     args=("--features", "var:highly_varied"))
        self.refused(self.a.tenx, "has no AnnData table of its columns (/var) for --features "
                     "var:highly_variable", "matrix", args=("--features", "var:highly_variable"))

    def test_files_naming_other_columns(self):
        other = self.path("other.h5ad")
        genes = list(self.a.genes)
        genes[7] = "Other7"
        write_h5ad(other, self.a, genes=genes)
        line = self.assert_fails(["train", "--data", self.a.by_hand, other, "--dataset", "X",
                                  "--layers", "4", "--transform", "log1p", "--checkpoint",
                                  self.path("ck.h5")], 3,
                                 f"{other}: X: its columns are not those of {self.a.by_hand}: "
                                 "column 7 is 'Other7' here and 'Gene7' there")
        self.assertEqual(sorted(os.listdir(self.dir)), ["other.h5ad"], line)


if __name__ == "__main__":
    cli_support.AETRAIN = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
