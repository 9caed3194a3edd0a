"""Runs the Autobahn WebSocket cases (kosoku) against natter's conformance echo endpoint.

Starts the built natter binary on 127.0.0.1:0 with a temporary data dir and a config that
enables `ws.conformance_echo` (and raises `ws.max_frame_bytes` for the 16 MiB cases), runs
every case (permessage-deflate ones included), and compares the verdict of each case (behaviour and
closing behaviour) with the committed expectation. Exit status 0 only when every case matches
its expectation, every case passed, and the server is still healthy and stops cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import kosoku

# Every case runs, the permessage-deflate ones (12.*, 13.*) included. Those are 216 cases of
# 1,000 messages each (most of the suite's time, mostly the client's compression): they run two
# at a time; the rest one at a time, since some verdicts (6.4.*, fail-fast on invalid UTF-8)
# depend on timing.
EXCLUDED: list[str] = []
COMPRESSION = ["12.*", "13.*"]
# The 9.* cases send single messages of up to 16 MiB.
MAX_FRAME_BYTES = 16 * 1024 * 1024
SERVING = re.compile(r"natter is serving.*listen=(\S+)")


def start_natter(binary: str, data_dir: str, log_path: Path) -> tuple[subprocess.Popen, str]:
    """Starts natter and returns the process and the address it listens on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NATTER_")}
    env.update(
        NATTER_WS_CONFORMANCE_ECHO="true",
        NATTER_WS_MAX_FRAME_BYTES=str(MAX_FRAME_BYTES),
        NATTER_LOG="info",
    )
    process = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    found: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        # Keeps reading stderr to the end so the server never blocks on a full pipe.
        with log_path.open("w") as log:
            assert process.stderr is not None
            for line in process.stderr:
                log.write(line)
                log.flush()
                match = SERVING.search(line)
                if match and not found:
                    found.append(match.group(1))
                    ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    if not ready.wait(60) or not found:
        process.kill()
        sys.exit(f"natter did not start; its log is {log_path}")
    return process, found[0]


def run_cases(url: str, **selection) -> list:
    """Runs a selection of cases and returns every result, passed or not."""
    try:
        return asyncio.run(kosoku.run_fuzzingclient(url, **selection))
    except kosoku.FailureError as failure:
        return failure.results


def healthy(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/healthz", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def verdict(result) -> str:
    """The normalized outcome of a case: both verdicts and the close code natter sent (a
    regression from a close frame to a dropped connection keeps kosoku's verdicts but not this)."""
    code = result.remote_close_code if result.remote_close_code is not None else "none"
    return f"{result.behavior.value} / {result.behavior_close.value} / close {code}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bin", required=True, help="the natter binary")
    parser.add_argument("--expected", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--update", action="store_true", help="rewrite the expectation")
    args = parser.parse_args()
    if sys.version_info < (3, 10):
        sys.exit("kosoku needs Python >= 3.10")
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "natter.log"

    with tempfile.TemporaryDirectory(prefix="natter-conformance-") as data_dir:
        process, address = start_natter(args.bin, data_dir, log_path)
        started = time.monotonic()
        url = f"ws://{address}/ws/echo"
        results = run_cases(url, exclude_cases=EXCLUDED + COMPRESSION)
        results += run_cases(url, cases=COMPRESSION, exclude_cases=EXCLUDED, concurrency=2)
        elapsed = time.monotonic() - started
        still_healthy = healthy(address)
        process.send_signal(signal.SIGTERM)
        try:
            exit_code = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            exit_code = -1

    actual = {r.case_id: verdict(r) for r in results}
    details = [
        {
            "case": r.case_id,
            "behavior": r.behavior.value,
            "behavior_close": r.behavior_close.value,
            "remote_close_code": r.remote_close_code,
            "duration_ms": r.duration,
            "passed": r.passed,
        }
        for r in results
    ]
    (args.out / "results.json").write_text(json.dumps(details, indent=1) + "\n")
    if args.update:
        args.expected.write_text(json.dumps(actual, indent=1) + "\n")
        print(f"wrote {len(actual)} expectations to {args.expected}")

    expected = json.loads(args.expected.read_text())
    differ = []
    for case in sorted(set(expected) | set(actual), key=lambda c: [int(p) for p in c.split(".")]):
        if expected.get(case) != actual.get(case):
            differ.append(case)
            print(f"  {case}: expected {expected.get(case)}, got {actual.get(case)}")
    passed = sum(r.passed for r in results)
    counts = collections.Counter(f"{r.behavior.value} / {r.behavior_close.value}" for r in results)
    excluded = f" ({', '.join(EXCLUDED)} excluded)" if EXCLUDED else ""
    print(f"conformance: {len(results)} cases run{excluded} in {elapsed:.1f} s")
    for name, count in counts.most_common():
        print(f"  {count:4d}  {name}")
    log_text = log_path.read_text()
    panicked = "panicked" in log_text
    print(
        f"conformance: {passed} passed, {len(results) - passed} failed; "
        f"{len(differ)} differ from {args.expected}; "
        f"server healthy afterwards: {still_healthy}; exit code {exit_code}; panics: {panicked}"
    )
    ok = not differ and passed == len(results) and still_healthy and exit_code == 0 and not panicked
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
