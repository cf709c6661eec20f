"""Server memory of the app after 1 run and after N runs (issue: the app's figures).

Starts ``app.py`` on a free loopback port with the app's defaults (the shipped checkpoint), drives it with
gradio_client, and reads the server process's resident memory from /proc after the first run and after the
last. Each run is a short generation of one example person and garment with one switch.

    .venv/bin/python scripts/app_memory.py [--runs 20] [--seconds 2]
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from app_server import client_run, running_app  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--seconds", type=int, default=2)
    args = ap.parse_args()
    from gradio_client import Client

    from fashionchameleon.app.state import examples

    ex = examples(128)
    with running_app() as (url, proc):
        client = Client(url, verbose=False, download_files=False)
        rss = []
        for k in range(args.runs):
            client_run(url, ex, switch_to=1 + k % 3, seed=k, seconds=args.seconds, person=k % len(ex.persons),
                       client=client)
            rss.append(rss_mib(proc.pid))
            print(f"run {k + 1}: server RSS {rss[-1]:.0f} MiB", file=sys.stderr)
    print(json.dumps({"runs": args.runs, "rss_after_1_mib": round(rss[0], 1), f"rss_after_{args.runs}_mib":
                      round(rss[-1], 1), "ratio": round(rss[-1] / rss[0], 3)}))


if __name__ == "__main__":
    main()
