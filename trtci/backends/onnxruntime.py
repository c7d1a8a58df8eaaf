"""The embedded default backend: ONNX Runtime on the CPU. A real backend, measured like any other.

It is also where the FP32 accuracy reference comes from (trtci.pipeline.validate), whatever else a run times.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from trtci.backends.base import Feeds, LoadRequest, Progress, prefer_for_auto
from trtci.backends.measure import measure_host
from trtci.config import BenchSettings, Config
from trtci.context.host import cpu_info
from trtci.errors import BackendError, BackendUnavailable
from trtci.results import BenchResult, DeviceInfo

PROVIDER = "CPUExecutionProvider"
BRIEF_CHARS = 100  # ORT's part of an error line: with trtci's words and a path around it, under 300 in all
_STATUS_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")
_LOAD_PREFIX = re.compile(r"^Load model from .*? failed:\s*")
# bounded repeats: a search over a long message stays linear
_SOURCE_LOCATION = re.compile(r"(?<![\w/-])/?(?:[\w.-]{1,64}/){0,16}[\w-]{1,64}\.(?:cc|cpp|cu|h|hpp):\d{1,7} ")
_MAX_SCANNED = 8192  # characters of a message looked at: its start and its end
INSTALL_HINT = "pip install onnxruntime (a dependency of trtci)"


@prefer_for_auto(100)  # it always runs: auto's last resort
def create(config: Config) -> OnnxRuntimeBackend:
    """The backend for a run; BackendUnavailable when ONNX Runtime cannot be imported."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise BackendUnavailable(f"cannot import onnxruntime ({e}): {INSTALL_HINT}") from e
    return OnnxRuntimeBackend(threads=config.bench.threads)


class OnnxRuntimeBackend:
    """ONNX Runtime's CPU execution provider; sessions take any batch (dynamic shapes), nothing is built."""

    name = "onnxruntime"
    int8_scheme = "onnxruntime"
    validation_only_schemes = ("tensorrt",)  # the Q/DQ model TensorRT gets: its accuracy, known without a GPU
    builds_engines = False
    can_run = True
    why_not_run = ""

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads
        self._sessions: dict[tuple[Path, int, bool], OnnxRuntimeSession] = {}

    @property
    def version(self) -> str:
        import onnxruntime as ort

        return str(ort.__version__)

    def load_options(self, config: Config) -> dict[str, Any]:
        """Nothing beyond "threads", which every LoadRequest carries."""
        return {}

    def identity_options(self, config: Config) -> dict[str, Any]:
        """Nothing beyond what every series' identity holds (threads, shapes, calibration)."""
        return {}

    def device(self) -> DeviceInfo:
        import onnxruntime as ort

        cpu = cpu_info()
        details = {key: value for key, value in cpu.items() if key != "name"}
        details.update(onnxruntime=ort.__version__, provider=PROVIDER, threads=self.threads or "default")
        return DeviceInfo(kind="cpu", name=str(cpu["name"]), details=details)

    def load(self, request: LoadRequest) -> OnnxRuntimeSession:
        """One session per prepared file, thread count and interleaving: every batch size reuses it (shapes are
        dynamic). `options["interleaved"]`: the session alternates with another in an A/B, so its idle workers
        must not spin (below)."""
        threads = int(request.options.get("threads", self.threads))
        interleaved = bool(request.options.get("interleaved", False))
        key = (request.model_path, threads, interleaved)
        if key not in self._sessions:
            self._sessions[key] = OnnxRuntimeSession(request.model_path, threads, spinning=not interleaved)
        return self._sessions[key]


class OnnxRuntimeSession:
    """One ONNX Runtime InferenceSession on the CPU."""

    build: dict[str, Any] | None = None

    def __init__(self, path: Path, threads: int, *, spinning: bool = True) -> None:
        """`spinning`: ONNX Runtime's default, workers busy-wait a while after each call, which makes the next call
        start sooner. Off for sessions that alternate with another (an A/B): there one session's spinning workers
        take the cores the other's next call needs, measured here as hundreds of noisy rounds instead of twenty
        quiet ones for a 0.4 ms model on 2 cores."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        # Fatal only: ORT's warnings are noise here, and its errors come back as exceptions that trtci reports
        # in one line (logged too, they would add a second, longer one).
        options.log_severity_level = 4
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=[PROVIDER])
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/NotImplemented types from C++
            raise BackendError(f"onnxruntime cannot load {path.name}: {brief(e)}") from e
        self.output_names = [o.name for o in self._session.get_outputs()]

    def run(self, feeds: Feeds) -> dict[str, np.ndarray]:
        try:
            outputs = self._session.run(None, feeds)
        except Exception as e:
            raise BackendError(f"onnxruntime failed to run: {brief(e)}") from e
        return dict(zip(self.output_names, outputs))

    def benchmark(
        self, feeds: Feeds, settings: BenchSettings, batch: int, progress: Progress | None = None
    ) -> BenchResult:
        self.run(feeds)  # surface a bad feed as a BackendError before timing starts
        run = self._session.run
        return measure_host(lambda: run(None, feeds), settings, batch, progress)

    def close(self) -> None:
        """Sessions are shared across batch sizes and freed with the backend."""


def brief(error: Exception, limit: int = BRIEF_CHARS) -> str:
    """ONNX Runtime's message without what only its developers read, in at most `limit` characters.

    Dropped: the status prefix ("[ONNXRuntimeError] : 1 : FAIL : "), "Load model from <path> failed:" (the path
    is said once already), and C++ source locations with their function signatures, which make a load error
    1,000 characters long. What is still too long keeps its start and its end, where ORT says what it expected.
    The whole text stays in the exception chain (`trtci --debug` prints it).
    """
    text = str(error)
    if len(text) > _MAX_SCANNED:
        text = f"{text[: _MAX_SCANNED // 2]} … {text[-_MAX_SCANNED // 2 :]}"
    text = " ".join(text.split())
    text = _STATUS_PREFIX.sub("", text)
    text = _LOAD_PREFIX.sub("", text)
    text = _without_source_locations(text).strip() or type(error).__name__
    if len(text) <= limit:
        return text
    tail = limit // 3
    head = text[: limit - tail - 3].rsplit(" ", 1)[0]  # cut between words
    end = text[-tail:].split(" ", 1)[-1]
    return f"{head} … {end}"


def _without_source_locations(text: str) -> str:
    """`text` without "file.cc:123 " locations and, where one follows, the C++ signature up to its closing ")"."""
    while (match := _SOURCE_LOCATION.search(text)) is not None:
        rest = text[match.end() :]
        opening = rest.find("(")
        if opening != -1 and "::" in rest[:opening] and ". " not in rest[:opening]:
            depth = 0
            for index in range(opening, len(rest)):
                depth += {"(": 1, ")": -1}.get(rest[index], 0)
                if depth == 0:
                    rest = rest[index + 1 :].removeprefix(" const")
                    break
        text = f"{text[: match.start()]} {rest.lstrip()}"
    return " ".join(text.split())
