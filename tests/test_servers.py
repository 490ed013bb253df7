"""Managed inference servers: the lifecycle on llama-cpp-python's server with the embedded model
(start, health, chat and raw completions, a killed server, stop), failures to start reported in
one line, and the command lines of the vLLM and SGLang kinds (neither can be installed here)."""

import json
import os
import signal
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from steps.engines import build_llm, embedded_gguf
from steps.errors import UserError
from steps.servers import (
    SERVER_KINDS,
    LlamaCppServer,
    ManagedServer,
    ServerError,
    SGLangServer,
    VLLMServer,
    free_port,
    managed_server,
)
from steps.servers.base import scrub_line

CHAT = [{"role": "user", "content": "Name one planet of the solar system."}]


def _gone(pid: int) -> bool:
    """True when no process with this pid, nor any in its process group, is alive."""
    for probe in (os.kill, os.killpg):
        try:
            probe(pid, 0)
        except ProcessLookupError:
            continue
        return False
    return True


class ScriptServer(ManagedServer):
    """A stand-in server: a Python script, for failures no real server produces on demand."""

    kind = "script"

    def __init__(self, script: str, log_dir: Path, **options: object) -> None:
        super().__init__("script", log_dir, **options)
        self.script = textwrap.dedent(script)

    def check_installed(self) -> None:
        pass

    def command(self, port: int) -> list[str]:
        return [sys.executable, "-c", self.script, str(port)]


@pytest.fixture(scope="module")
def llamacpp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppServer]:
    with LlamaCppServer(str(embedded_gguf()), tmp_path_factory.mktemp("run"), n_ctx=2048,
                        n_threads=1) as server:
        yield server


@pytest.mark.model
def test_llamacpp_server_answers_chat_and_raw_completions(llamacpp: LlamaCppServer) -> None:
    with urllib.request.urlopen(f"{llamacpp.base_url}/models", timeout=5) as response:
        served = [m["id"] for m in json.load(response)["data"]]
    assert served == ["SmolLM2-135M-Instruct.Q4_1.gguf"]  # the alias, never the local path
    client = OpenAI(base_url=llamacpp.base_url, api_key="none", max_retries=0)
    chat = client.chat.completions.create(model=llamacpp.model_name, messages=CHAT, max_tokens=16,
                                          temperature=0.0)
    assert chat.choices[0].message.content.strip()
    raw = client.completions.create(model=llamacpp.model_name, prompt="<|im_start|>user\n",
                                    max_tokens=16, temperature=0.0)
    assert raw.choices[0].text and raw.usage.completion_tokens > 0
    assert llamacpp.log_path.read_text().count("POST /v1/completions") == 1


@pytest.mark.model
def test_engine_spec_reaches_the_server(llamacpp: LlamaCppServer) -> None:
    """The OpenAI-compatible engine of the engine table: chats and raw (Magpie) prompts."""
    assert llamacpp.engine_spec == f"openai:SmolLM2-135M-Instruct.Q4_1.gguf@{llamacpp.base_url}"
    llm = build_llm(llamacpp.engine_spec, max_new_tokens=16, temperature=0.0)
    llm.load()
    chat, raw = llm.generate_outputs(inputs=[CHAT, "<|im_start|>user\n"], **llm.generation_kwargs)
    assert chat["generations"][0].strip() and raw["generations"][0] is not None


@pytest.mark.model
def test_killed_server_is_reported_in_one_line(tmp_path: Path) -> None:
    crashes: list[ServerError] = []
    seen = threading.Event()
    server = LlamaCppServer(str(embedded_gguf()), tmp_path, n_ctx=512, n_threads=1,
                            on_crash=lambda error: (crashes.append(error), seen.set()))
    with pytest.raises(ServerError) as error, server:
        pid = server.pid
        os.kill(pid, signal.SIGKILL)
        assert seen.wait(10), "the watcher did not report the crash"
    message = str(error.value)
    assert crashes == [error.value]
    assert "\n" not in message and str(tmp_path) not in message
    assert message.startswith("engine 'llamacpp-server:SmolLM2-135M-Instruct.Q4_1.gguf': the server "
                              "exited with status -9 while serving")
    assert "server-llamacpp-server.log" in message and "Uvicorn running on" in message
    assert _gone(pid)


def test_bad_gguf_is_reported_in_one_line_within_the_timeout(tmp_path: Path) -> None:
    model = tmp_path / "models" / "broken.gguf"
    model.parent.mkdir()
    model.write_bytes(b"not a gguf file" * 100)
    server = LlamaCppServer(str(model), tmp_path / "run", startup_timeout=60)
    started = time.monotonic()
    with pytest.raises(ServerError) as error:
        server.start()
    assert time.monotonic() - started < 60
    message = str(error.value)
    assert "'llamacpp-server:broken.gguf': the server exited with status 1 while starting" in message
    assert "Failed to load model from file: broken.gguf" in message
    assert "\n" not in message and str(tmp_path) not in message
    assert not server.running and _gone(server.pid)


def test_missing_gguf_is_a_user_error_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"'llamacpp-server:no\.gguf': GGUF file not found"):
        LlamaCppServer(str(tmp_path / "no.gguf"), tmp_path)
    assert not (tmp_path / "server-llamacpp-server.log").exists()


def test_exiting_command_is_reported_with_the_scrubbed_log_tail(tmp_path: Path) -> None:
    script = """
        import sys
        print("loading /home/someone/models/weights.bin", flush=True)
        print("token hf_abcdefghijklmnopqrstuvwxyz0123 rejected", flush=True)
        sys.exit(3)
    """
    with pytest.raises(ServerError) as error:
        ScriptServer(script, tmp_path, startup_timeout=30).start()
    message = str(error.value)
    assert "engine 'script:script': the server exited with status 3 while starting" in message
    assert "loading weights.bin | token <redacted> rejected" in message
    assert "/home/someone" not in message and "hf_abc" not in message


def test_silent_server_times_out_and_is_stopped(tmp_path: Path) -> None:
    script = """
        import time
        print("pretending to load", flush=True)
        time.sleep(120)
    """
    server = ScriptServer(script, tmp_path, startup_timeout=1.5)
    started = time.monotonic()
    with pytest.raises(ServerError, match=r"did not answer GET /v1/models within 1\.5 s; .*pretending"):
        server.start()
    assert time.monotonic() - started < 15
    assert not server.running


def test_stop_ends_the_server_and_its_children(tmp_path: Path) -> None:
    """A server that spawns a worker ignoring SIGTERM (as vLLM's engine cores may) and serves
    /v1/models itself: stop() leaves neither behind."""
    script = """
        import http.server, signal, subprocess, sys
        child = subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"])
        print(f"child {child.pid}", flush=True)
        class Models(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.end_headers(); self.wfile.write(b'{"data": []}')
        http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Models).serve_forever()
    """
    server = ScriptServer(script, tmp_path, startup_timeout=30, stop_timeout=2)
    with server:
        pid = server.pid
        assert server.running and server.base_url.startswith("http://127.0.0.1:")
        child = int(server.log_path.read_text().split("child ")[1].split()[0])
        server.check()  # healthy: nothing to raise
    assert not server.running and _gone(pid) and _gone(child)
    server.stop()  # twice is fine


def test_llamacpp_server_ignores_host_and_port_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "1")
    monkeypatch.setenv("HOST", "0.0.0.0")
    server = LlamaCppServer(str(embedded_gguf()), tmp_path, n_threads=2)
    assert "PORT" not in server.environment() and "HOST" not in server.environment()
    assert server.command(4321) == [
        sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_gguf()),
        "--model_alias", "SmolLM2-135M-Instruct.Q4_1.gguf", "--host", "127.0.0.1", "--port", "4321",
        "--n_ctx", "4096", "--n_threads", "2", "--n_threads_batch", "2"]


def test_vllm_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Command line only: vLLM cannot be installed here, so nothing below runs `vllm serve`."""
    server = VLLMServer("Qwen/Qwen2.5-7B-Instruct", tmp_path, tensor_parallel_size=2,
                        max_model_len=8192, extra_args=["--enforce-eager"])
    monkeypatch.setattr(server, "executable", lambda: "/opt/venv/bin/vllm")
    assert server.command(8001) == [
        "/opt/venv/bin/vllm", "serve", "Qwen/Qwen2.5-7B-Instruct", "--host", "127.0.0.1",
        "--port", "8001", "--tensor-parallel-size", "2", "--max-model-len", "8192", "--enforce-eager"]
    assert server.health_path == "/health" and server.model_name == "Qwen/Qwen2.5-7B-Instruct"
    assert server.environment()["USE_TF"] == "0"
    monkeypatch.setattr(server, "executable", lambda: None)
    with pytest.raises(UserError, match=r"pip install -e '\.\[vllm\]'"):
        server.start()
    assert server.pid is None


def test_sglang_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Command line only: SGLang cannot be installed here."""
    server = SGLangServer("Qwen/Qwen2.5-7B-Instruct", tmp_path, tp_size=4, host="10.0.0.5")
    assert server.command(30000) == [
        sys.executable, "-m", "sglang.launch_server", "--model-path", "Qwen/Qwen2.5-7B-Instruct",
        "--host", "10.0.0.5", "--port", "30000", "--tp-size", "4"]
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(UserError, match="install SGLang"):
        server.start()


def test_kinds_and_factory(tmp_path: Path) -> None:
    assert set(SERVER_KINDS) == {"llamacpp-server", "vllm", "sglang"}
    assert isinstance(managed_server("vllm", "m", tmp_path), VLLMServer)
    with pytest.raises(ValueError, match="not a server kind"):
        managed_server("tgi", "m", tmp_path)


def test_scrub_line_keeps_urls_and_cuts_paths() -> None:
    line = "loaded /data/models/x.gguf; Uvicorn running on http://127.0.0.1:8000/v1 (Bearer abcdefghijk)"
    assert scrub_line(line) == ("loaded x.gguf; Uvicorn running on http://127.0.0.1:8000/v1 "
                                "(Bearer <redacted>)")


def test_llamacpp_server_as_the_engine_of_a_tiny_orca3_mix_run(tmp_path: Path) -> None:
    """`llamacpp-server:` in the engine table: the run starts one server for both roles, every
    step reaches it over HTTP, its log lands in the run folder, and it is gone afterwards."""
    import subprocess

    from steps import REPO_ROOT

    spec = f"llamacpp-server:{embedded_gguf()}"
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "pipelines" / "orca3_mix.py"), "--skills",
         "text_classification", "--rows", "2", "--tasks-per-item", "1", "--refinement-rounds", "0",
         "--agent-max-tokens", "120", "--teacher-max-tokens", "24", "--batch-size", "1",
         "--agent-llm", spec, "--teacher", spec, "--output-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = list(tmp_path.glob(".work/*/server-llamacpp-server.log"))
    assert len(logs) == 1 and logs[0].read_text().count("--- llamacpp-server on port") == 1
    record = json.loads((tmp_path / "run.json").read_text())
    assert sum(record["rows"].values()) > 0 and record["tokens"]["output"] > 0
    assert record["engines"]["teacher"]["model_id"] == embedded_gguf().name


@pytest.mark.model
def test_engine_url_reuses_a_running_server(llamacpp: LlamaCppServer,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`--engine-url`: a `llamacpp-server:` spec reaches the user's server; nothing starts."""
    from steps.engines import check_engine
    from steps.servers.engine import ENGINE_URLS, reuse_engine_url, serve_engines

    # set through monkeypatch, so what reuse_engine_url writes there is undone after the test
    # (a later test's subprocess would otherwise inherit this server)
    monkeypatch.setenv(ENGINE_URLS, "{}")
    spec = f"llamacpp-server:{embedded_gguf()}"
    reuse_engine_url([spec, "embedded", None], llamacpp.base_url + "/")
    check_engine(spec, "--engine")  # the preflight asks that server
    with serve_engines([spec], "/nonexistent") as served:
        assert served == {spec: llamacpp.base_url}
        llm = build_llm(spec, max_new_tokens=8, temperature=0.0)
        assert llm.base_url == llamacpp.base_url and llm.model == llamacpp.model_name


def test_engine_url_nobody_answers_is_one_line(tmp_path: Path) -> None:
    import subprocess

    from steps import REPO_ROOT

    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "pipelines" / "magpie.py"), "--rows", "2", "--engine",
         "vllm:org/model", "--engine-url", f"http://127.0.0.1:{free_port()}/v1", "--output-dir",
         str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --engine vllm:org/model: no server answers"), last
    assert "Traceback" not in done.stderr


@pytest.mark.model
def test_server_killed_during_a_run_ends_it_in_one_line(tmp_path: Path) -> None:
    """The run's managed server dies mid-run: the run stops (no retrying into a dead port) with
    one line naming the engine and the log's last lines."""
    import subprocess

    from steps import REPO_ROOT

    spec = f"llamacpp-server:{embedded_gguf()}"
    proc = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "pipelines" / "orca3_mix.py"), "--skills",
         "text_classification", "--rows", "12", "--tasks-per-item", "1", "--refinement-rounds", "1",
         "--agent-max-tokens", "120", "--teacher-max-tokens", "24", "--batch-size", "1",
         "--agent-llm", spec, "--teacher", spec, "--output-dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline, servers = time.monotonic() + 300, []
    while time.monotonic() < deadline and proc.poll() is None:
        logs = list(tmp_path.glob(".work/*/server-llamacpp-server.log"))
        servers = [pid for pid in os.listdir("/proc") if pid.isdigit()
                   and "llama_cpp.server" in _cmdline(pid) and _parent(pid) == proc.pid]
        if servers and logs and "POST /v1/chat/completions" in logs[0].read_text():
            break  # serving requests, and still there to be killed
        time.sleep(0.2)
    ended = proc.stderr.read()[-2000:] if proc.poll() is not None else "still running"
    assert len(servers) == 1, f"the run ended before its server could be killed: {ended}"
    os.kill(int(servers[0]), signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: engine 'llamacpp-server:SmolLM2-135M-Instruct.Q4_1.gguf': the "
                           "server exited with status -9 while serving; last lines of"), last


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _parent(pid: str) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1
