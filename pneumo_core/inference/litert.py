"""The LiteRT backend: an exported ``.tflite`` classifier behind the same pipeline as a Keras one.

``Predictor("finetuned")`` runs the shipped float32 export ``models/finetuned.tflite`` on a
:class:`LiteRTBackend` wherever ``ai_edge_litert`` is installed (the runtime, requirements.txt), and so do
``Predictor("models/finetuned.int8.tflite")`` and the CLI's ``--model PATH.tflite``. Grad-CAM works when the
file carries the ``cam`` output, as every file written by :mod:`pneumo_core.training.export` does; for a
``.tflite`` without it, ``predict(explain=True)`` returns the label with no heatmap and says so in ``notes``.

The decision threshold and the OOD detector are the source model's, read from beside the file:
the threshold from the ``<file>.json`` sidecar and the detector from the file it names under the export's
folder (``reports/<source>/ood.npz`` for an export beside its source, such as the shipped ones; else the copy
``<name>.ood.npz``), whose SHA-256 the sidecar records (a changed or damaged detector is refused), so a set
moved together keeps both. The source's own reports (``reports/<source stem>/``) are used when present (a
threshold chosen again after the export) and for exports written before detectors travelled.
For int8 files both are approximations: the features the detector sees are quantised.
Every export and its detector must be listed in the manifest beside them (``MANIFEST.json``) with the
SHA-256 they have (``export`` records them there); an unlisted or changed file is refused.

The interpreter is LiteRT's (``ai_edge_litert``) when that package is installed, else
``tf.lite.Interpreter`` (still shipped in TF 2.21, with a deprecation warning that is silenced
here). An interpreter is not thread-safe, so a backend holds a small pool of them, each used by one
call at a time; how many, and how many threads each, depends on the use (docs/design.md,
:func:`pneumo_core.config.litert_layout`): the CLI's batch path runs one interpreter on every core, the
dashboard one interpreter per core (up to 4) so that concurrent sessions run in parallel.
"""
from __future__ import annotations

import importlib.util
import json
import os
import queue
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np

from pneumo_core.artifacts import reports_dir, sha256_file, sidecar
from pneumo_core.config import IMAGE_SIZE, litert_layout, model_path
from pneumo_core.errors import MissingDependency, ModelLoadError, first_line
from pneumo_core.inference.model_files import (
    expected_hash,
    export_detector_path,
    report_ood,
    shipped_litert_variant,
    shown_path,
    verify_against_manifest,
)
from pneumo_core.inference.ood import MahalanobisOOD

#: What a user runs to get the LiteRT interpreter.
LITERT_INSTALL = "pip install -r requirements.txt (ai-edge-litert)"


def installed(module: str) -> bool:
    """True when ``module`` can be imported (found, and not blocked in ``sys.modules``), without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: blocked (None in sys.modules)
        return False


def litert_available() -> bool:
    """True when LiteRT's own interpreter (``ai_edge_litert``) is installed."""
    return installed("ai_edge_litert")


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def make_interpreter(path: str | Path, num_threads: int | None = None, xnnpack: bool = True):
    """A LiteRT/TFLite interpreter for ``path`` with ``num_threads`` threads: XNNPACK CPU delegate
    (the default), or TFLite's built-in kernels only (``xnnpack=False``)."""
    num_threads = num_threads or _cpu_count()
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        try:
            import tensorflow as tf
        except ImportError:
            raise MissingDependency(f"the LiteRT backend needs ai-edge-litert: {LITERT_INSTALL}") from None
        Interpreter, OpResolverType = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    kw = {} if xnnpack else {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        return Interpreter(model_path=str(path), num_threads=num_threads, **kw)


DELEGATE_NOTICE = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


class without_delegate_notice:
    """While planning an interpreter, keep LiteRT's native "INFO: Created ... XNNPACK delegate" line off stderr
    (a CLI's stderr holds one-line errors only) and pass every other native line through. It swaps file
    descriptor 2, so it is used only where one thread runs (the CLI's start-up), never in the dashboard."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled

    def __enter__(self):
        if self.enabled:
            import sys

            sys.stderr.flush()
            self._saved, self._capture = os.dup(2), tempfile.TemporaryFile()
            os.dup2(self._capture.fileno(), 2)
        return self

    def __exit__(self, *exc):
        if self.enabled:
            os.dup2(self._saved, 2)
            os.close(self._saved)
            self._capture.seek(0)
            rest = b"".join(line for line in self._capture.read().splitlines(keepends=True)
                            if line.strip() != DELEGATE_NOTICE)
            self._capture.close()
            if rest:
                os.write(2, rest)
        return False


class _Slot:
    """One interpreter of a backend's pool and the batch size it is planned for (used by one call at a time)."""

    def __init__(self, interp, xnnpack: bool):
        self.interp, self.xnnpack, self.batch = interp, xnnpack, None


class LiteRTBackend:
    """A ``.tflite`` classifier; see the module docstring. ``verify`` checks the file against the
    manifest beside it and against its sidecar's SHA-256. ``use`` ("batch": the CLI; "serve": the
    dashboard) picks how many interpreters run side by side and with how many threads each; ``interpreters``
    and ``num_threads`` (or ``PNEUMO_LITERT_INTERPRETERS`` / ``PNEUMO_LITERT_THREADS``) override it."""

    kind = "litert"
    batch_size = 16  # XNNPACK, 2 threads: 6.4 ms a film at 8-16, 8.4 ms at 32 (the batch outgrows the caches)

    def __init__(self, path: str | Path, *, verify: bool = True, warm_up: bool = True,
                 num_threads: int | None = None, xnnpack: bool = True, interpreters: int | None = None,
                 use: str = "batch"):
        self.verify = verify
        self.path = Path(path)
        variant = shipped_litert_variant(self.path)
        shown = shown_path(self.path) if variant else self.path.name
        if variant:
            fix = (f"Export it again (python -m pneumo_core export --model {variant}, with requirements-train.txt) "
                   "or restore it (git checkout models/)")
        else:
            fix = "Export it again (python -m pneumo_core export --model MODEL.keras --out FILE.tflite)"
        self._fix = fix
        if not self.path.is_file():
            hint = "; or run the Keras model (--backend keras, PNEUMO_BACKEND=keras)" if variant else ""
            raise ModelLoadError(f"model file not found: {shown if variant else self.path}. {fix}{hint}.")
        self.sha256 = sha256_file(self.path)
        if verify:
            verify_against_manifest(self.path, sha256=self.sha256, name=shown, remedy=f"{fix}.")
        meta_path = sidecar(self.path)
        try:
            self.meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        except ValueError:
            raise ModelLoadError(f"{meta_path.name} (the export's sidecar) is not valid JSON; export the "
                                 "model again (python -m pneumo_core export)") from None
        if verify and self.meta.get("sha256") not in (None, self.sha256):
            raise ModelLoadError(f"{self.path.name} does not match the SHA-256 in {meta_path.name}: the file was "
                                 "changed or truncated. Export it again (python -m pneumo_core export).")
        source_sha = expected_hash(self.path.with_suffix(".keras")) if verify and variant else None
        if source_sha is not None and self.meta.get("source_sha256") != source_sha:  # retrained since the export
            raise ModelLoadError(f"{shown} was exported from another {variant}.keras than the one in MANIFEST.json "
                                 f"(retrained since?). {fix}.")
        self.name = self.path.name[: -len(".tflite")]
        self.exported_threshold = self.meta.get("threshold")
        pool, threads = litert_layout(use, _cpu_count())
        self.pool_size, self.num_threads = interpreters or pool, num_threads or threads
        self.delegate = "xnnpack" if xnnpack else "builtin"
        self._quiet_notice = use == "batch"  # one thread at start-up: safe to borrow the process's stderr briefly
        first = self._new_slot()
        self._idle: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        self._idle.put(first)
        self._created, self._grow = 1, threading.Lock()
        try:
            self._input = first.interp.get_input_details()[0]
            # Outputs are told apart by rank: p (B,), pooled (B, 1280 per member), cam (B, 7, 7).
            by_rank = {len(d["shape_signature"]): d["index"] for d in first.interp.get_output_details()}
            self._out_p, self._out_pooled, self._out_cam = by_rank.get(1), by_rank.get(2), by_rank.get(3)
            if self._out_p is None:
                raise ModelLoadError(f"{self.path.name} has no (B,) probability output; export it with "
                                     "python -m pneumo_core export")
            if warm_up:
                self.warm_up()
        except ModelLoadError:
            raise
        except Exception as exc:  # a graph the interpreter reads but cannot plan or run
            raise ModelLoadError(f"could not load TFLite model {self.path.name}: {first_line(exc)}. "
                                 f"{self._fix}.") from exc

    def _new_slot(self) -> _Slot:
        try:
            xnnpack = self.delegate == "xnnpack"
            return _Slot(make_interpreter(self.path, self.num_threads, xnnpack), xnnpack)
        except MissingDependency:
            raise
        except Exception as exc:
            raise ModelLoadError(f"could not load TFLite model {self.path.name}: {first_line(exc)}. "
                                 f"{self._fix}.") from exc

    def __repr__(self) -> str:
        return (f"LiteRTBackend({self.name!r}, delegate={self.delegate!r}, interpreters={self.pool_size}, "
                f"num_threads={self.num_threads})")

    @property
    def report_dir(self) -> Path | None:
        """The source model's reports: ``<dir>/reports/<source stem>/`` beside the .tflite file,
        else beside the source model recorded in the sidecar."""
        stem = self.meta.get("source_name") or self.path.name.split(".")[0]
        local = reports_dir(model_path(stem, self.path.parent))
        if local.is_dir():
            return local
        src = self.meta.get("source_model")
        if src:
            src = Path(src) if Path(src).is_absolute() else Path(os.path.normpath(self.path.parent / src))
            other = reports_dir(src)
            if other.is_dir():
                return other
        return local

    def load_ood(self) -> MahalanobisOOD | None:
        """The detector the sidecar names (its SHA-256 checked against the sidecar and the manifest of this
        file's folder), else the source model's under its reports (exports written before detectors travelled)."""
        entry = self.meta.get("ood_detector")
        if not entry:
            return report_ood(self.report_dir, self.verify)
        file = entry.get("file") if isinstance(entry, dict) else None  # a damaged sidecar: refused below
        path = export_detector_path(self.path, file, remedy=f"{self._fix}.")
        rel = path.relative_to(self.path.parent).as_posix()
        shown = f"{self.path.parent.name}/{rel}" if shipped_litert_variant(self.path) else rel
        if not path.is_file():
            keep = ("keep the .tflite, its .json sidecar and its .ood.npz together" if "/" not in rel
                    else f"keep the .tflite and its .json sidecar in the folder that holds {rel}")
            raise ModelLoadError(f"{shown} (the OOD detector of {self.path.name}) is missing: {keep}. {self._fix}.")
        if self.verify:
            verify_against_manifest(path, models_dir=self.path.parent, name=shown, remedy=f"{self._fix}.")
        if self.verify and sha256_file(path) != entry.get("sha256"):
            raise ModelLoadError(f"{shown} does not match the SHA-256 in {sidecar(self.path).name}: the OOD "
                                 f"detector was changed or damaged since the export. {self._fix}.")
        try:
            return MahalanobisOOD.load(path)
        except Exception as exc:  # np.load raises many types for a damaged file
            raise ModelLoadError(f"{shown} (the OOD detector of {self.path.name}) cannot be read "
                                 f"({type(exc).__name__}). {self._fix}.") from None

    @property
    def has_gradcam(self) -> bool:
        """True when the file has the Grad-CAM (``cam``) output."""
        return self._out_cam is not None

    def _acquire(self) -> _Slot:
        """An idle interpreter; a new one while the pool is not full; else wait for one to be free."""
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._grow:
            grow = self._created < self.pool_size
            self._created += grow
        if grow:
            try:
                return self._new_slot()
            except Exception:
                with self._grow:
                    self._created -= 1
                raise
        return self._idle.get()

    def _run(self, x: np.ndarray):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
            raise ValueError(f"expected (B, {IMAGE_SIZE}, {IMAGE_SIZE}, 3) model inputs, got {x.shape}")
        slot = self._acquire()
        try:
            if slot.batch != x.shape[0]:
                self._resize(slot, x.shape)
            interp = slot.interp
            interp.set_tensor(self._input["index"], x)
            interp.invoke()  # releases the GIL: the pool's interpreters run in parallel
            get = interp.get_tensor
            p = get(self._out_p).copy()
            pooled = get(self._out_pooled).copy() if self._out_pooled is not None else None
            cam = get(self._out_cam).copy() if self._out_cam is not None else None
        finally:
            self._idle.put(slot)
        return p, cam, pooled

    def _resize(self, slot: _Slot, shape):
        """Plan ``slot``'s interpreter for batch ``shape[0]``. XNNPACK refuses a few quantised graphs
        (degenerate quantisation ranges, seen on random test models): TFLite's built-in kernels then
        run the same file, slower, in this interpreter and every later one."""
        slot.batch = None
        try:
            slot.interp.resize_tensor_input(self._input["index"], list(shape))
            with without_delegate_notice(self._quiet_notice):
                slot.interp.allocate_tensors()
        except RuntimeError:
            if not slot.xnnpack:
                raise
            self.delegate = "builtin"
            slot.interp, slot.xnnpack = make_interpreter(self.path, self.num_threads, xnnpack=False), False
            slot.interp.resize_tensor_input(self._input["index"], list(shape))
            slot.interp.allocate_tensors()
        slot.batch = shape[0]

    def scores(self, x: np.ndarray):
        """Model inputs (B,224,224,3) -> (p_pneumonia (B,), pooled features, or None without that output)."""
        p, _, pooled = self._run(x)
        return p, pooled

    def explain(self, x: np.ndarray):
        """Model inputs -> (p_pneumonia, raw 7x7 Grad-CAM maps, pooled features or None)."""
        if not self.has_gradcam:
            raise NotImplementedError(f"{self.path.name} has no cam output: Grad-CAM is not available")
        return self._run(x)

    def warm_up(self) -> None:
        """Create every interpreter of the pool and plan each for one image now, not on a user's upload."""
        zeros = np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
        held = [self._acquire() for _ in range(self.pool_size)]  # all of them at once, so each is planned
        for slot in held:
            self._idle.put(slot)
        for _ in held:
            self.scores(zeros)
