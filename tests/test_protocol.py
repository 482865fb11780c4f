"""The bridge protocol: typed events and commands as JSON lines, robust to noise."""
from __future__ import annotations

import sys
import textwrap

from bridge import client, protocol


def test_every_event_round_trips():
    events = [
        protocol.Hello(command="train", bridge_version="0.1.0", python="3.11", device="cpu", backend="torch",
                       versions={"torch": "2.13.0"}, pid=42),
        protocol.Stage(stage="training", message="go"),
        protocol.Progress(step=10, total=100, loss=0.1, psnr=20.5, num_splats=1000, steps_per_sec=3.5, eta_sec=25.0),
        protocol.Snapshot(step=10, preview="/tmp/p.png", ply="/tmp/s.ply"),
        protocol.EvalResult(step=100, images=[{"name": "a.png", "psnr": 30.0, "ssim": 0.9}],
                            mean_psnr=30.0, mean_ssim=0.9),
        protocol.Log(level="warning", message="hm"),
        protocol.Done(status="completed", outputs={"splats": "/tmp/splats.ply"}, metrics={"psnr": 30.0}),
        protocol.Error(kind="bad_job", message="steps must be > 0", hint="set --steps"),
    ]
    for event in events:
        line = protocol.encode_event(event)
        assert line.endswith("\n") and "\n" not in line[:-1]
        assert protocol.decode_event(line) == event


def test_noise_is_ignored_and_unknown_events_are_kept():
    assert protocol.decode_event("Compiling CUDA kernels...") is None
    assert protocol.decode_event('{"loss": 1}') is None
    assert protocol.decode_event(b"\xff\xfe") is None
    unknown = protocol.decode_event('{"proto":"splatwork","v":2,"type":"newthing","x":1}')
    assert isinstance(unknown, protocol.Unknown) and unknown.data == {"x": 1}
    # A newer bridge adding a field to a known event still decodes.
    event = protocol.decode_event('{"proto":"splatwork","v":2,"type":"stage","stage":"training","extra":1}')
    assert event == protocol.Stage(stage="training")


def test_commands():
    for cmd in protocol.COMMANDS:
        assert protocol.decode_command(protocol.encode_command(cmd)) == cmd
        assert protocol.decode_command(cmd + "\n") == cmd
    assert protocol.decode_command("nonsense") is None


def test_stray_prints_cannot_corrupt_the_channel(tmp_path):
    """A real subprocess claims stdout, then Python and C code print to fd 1: only events arrive."""
    script = tmp_path / "noisy.py"
    script.write_text(textwrap.dedent("""
        import ctypes, os, sys
        sys.path.insert(0, sys.argv[1])
        from bridge import protocol
        print("noise before the claim")
        events = protocol.claim_stdout()
        print("python noise after the claim")
        os.write(1, b"raw fd noise\\n")
        ctypes.CDLL(None).puts(b"C library noise")
        events.emit(protocol.Stage(stage="training"))
        events.emit(protocol.Done(status="completed"))
    """))
    from conftest import ROOT

    proc = client.BridgeProcess([sys.executable, str(script), str(ROOT)], log_path=str(tmp_path / "log.txt"))
    seen = []
    code = client.run_to_end(proc, seen.append, timeout=60)
    proc.close()
    assert code == 0
    assert seen == [protocol.Stage(stage="training"), protocol.Done(status="completed")]
    log = (tmp_path / "log.txt").read_text()
    assert "python noise after the claim" in log and "raw fd noise" in log and "C library noise" in log


def test_a_command_exits_with_its_own_code_while_the_client_holds_stdin_open(tmp_path):
    """--ipc runs read commands on a thread; leaving must not abort on stdin's lock (exit 134)."""
    script = tmp_path / "cmd.py"
    script.write_text(textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        from bridge import protocol, runner
        def run(ctx):
            if sys.argv[2] == "fail":
                raise protocol.BridgeError("bad_input", "no such file", exit_code=protocol.EXIT_BAD_INPUT)
            return protocol.Done(status="completed")
        sys.exit(runner.run_command("test", run, ipc=True))
    """))
    from conftest import ROOT

    for mode, expected in (("ok", protocol.EXIT_OK), ("fail", protocol.EXIT_BAD_INPUT)):
        proc = client.BridgeProcess([sys.executable, str(script), str(ROOT), mode],
                                      log_path=str(tmp_path / f"{mode}.log"))
        seen = []
        code = client.run_to_end(proc, seen.append, timeout=60)  # stdin stays open throughout
        proc.close()
        assert code == expected, (tmp_path / f"{mode}.log").read_text()
        assert isinstance(seen[-1], protocol.Done if mode == "ok" else protocol.Error)
