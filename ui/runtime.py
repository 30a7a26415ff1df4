"""How this app runs inside Streamlit's script runner: TensorFlow's state kept across reruns.

After every script run Streamlit calls ``_clean_problem_modules`` (in
``streamlit.runtime.scriptrunner.script_runner``), which calls ``keras.backend.clear_session()``.
With Keras 3 on TensorFlow that resets the default graph, clears TensorFlow's kernel cache and
runs a full garbage collection, so the first model call of every rerun rebuilds its kernels:
measured, about 600-700 ms of a 1 s upload against about 30 ms for the model call itself.

This app caches its models process-wide (``st.cache_resource``), so that cleanup frees nothing of
ours; it only throws the kernels away. :func:`keep_kernels_between_reruns` therefore replaces that
one step with a no-op and keeps every other cleanup Streamlit does there (today: closing
matplotlib figures). A worker process for inference was the alternative; it would add IPC and a
copy of every image for no gain, as nothing else in the app needs isolating from TensorFlow.

This matters only on the Keras backend (``PNEUMO_BACKEND=keras``). The default LiteRT backend never imports
Keras, and the runtime (requirements.txt) has no Keras to import: then Streamlit's cleanup finds no ``keras``
module and this module changes nothing (:func:`keep_kernels_between_reruns` is a no-op); it never imports
Keras or TensorFlow itself.
"""
from __future__ import annotations

import sys
import types
from collections.abc import Iterator, Mapping

from streamlit.runtime.scriptrunner import script_runner

from pneumo_core.inference.litert import installed

CLEANUP_NAME = "_clean_problem_modules"  # Streamlit 1.67's post-run cleanup in script_runner
HIDDEN_MODULE = "keras"  # the one module whose cleanup is skipped


class _ModulesWithoutKeras(Mapping):
    """A live view of ``sys.modules`` without ``keras``: Streamlit's cleanup, reading it, skips
    only the Keras step."""

    def __getitem__(self, name: str):
        if name == HIDDEN_MODULE:
            raise KeyError(name)
        return sys.modules[name]

    def __iter__(self) -> Iterator[str]:
        return (name for name in list(sys.modules) if name != HIDDEN_MODULE)

    def __len__(self) -> int:
        return len(sys.modules) - (HIDDEN_MODULE in sys.modules)

    def __contains__(self, name: object) -> bool:
        return name != HIDDEN_MODULE and name in sys.modules


def _without_keras_cleanup(cleanup: types.FunctionType) -> types.FunctionType:
    """A copy of Streamlit's ``cleanup`` function that sees no ``keras`` module, so it never calls
    ``keras.backend.clear_session()`` and runs every other step as written."""
    shown_sys = types.SimpleNamespace(modules=_ModulesWithoutKeras())
    copy = types.FunctionType(cleanup.__code__, {**cleanup.__globals__, "sys": shown_sys}, cleanup.__name__,
                              cleanup.__defaults__, cleanup.__closure__)
    copy.__doc__ = "Streamlit's post-run cleanup, without keras.backend.clear_session() (see ui.runtime)."
    copy.__wrapped__ = cleanup  # the original, for tests and for undoing the change
    copy.keeps_kernels = True
    return copy


def keep_kernels_between_reruns() -> bool:
    """Stop Streamlit from clearing Keras/TensorFlow state after each script run (idempotent).

    Returns True when the cleanup is (now or already) without its Keras step, False when this
    Streamlit has no such cleanup to change or Keras is not installed (then nothing is changed)."""
    if not installed(HIDDEN_MODULE):  # the runtime without TensorFlow: nothing to keep
        return False
    cleanup = getattr(script_runner, CLEANUP_NAME, None)
    if cleanup is None or not isinstance(cleanup, types.FunctionType):
        return False
    if getattr(cleanup, "keeps_kernels", False):
        return True
    setattr(script_runner, CLEANUP_NAME, _without_keras_cleanup(cleanup))
    return True


def kernels_kept() -> bool:
    """True when Streamlit's post-run cleanup currently skips ``keras.backend.clear_session()``."""
    return bool(getattr(getattr(script_runner, CLEANUP_NAME, None), "keeps_kernels", False))
