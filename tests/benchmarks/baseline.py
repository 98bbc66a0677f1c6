"""The baselines of bench_site.py, each run as a whole process like `harvester sync`.

    python tests/benchmarks/baseline.py download|parse URLS_FILE CONCURRENCY

`download`: GET every URL (CONCURRENCY at once, one httpx client, as sync does) and take
the sha256 of each body. `parse`: the same downloads, and every body parsed by
`icalendar.Calendar.from_ical` in this one process (the naive harvester). Prints the
number of bytes (download) or of VEVENTs (parse).
"""

from __future__ import annotations

import hashlib
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx


def main() -> None:
    mode, urls_file, concurrency = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    urls = urls_file.read_text(encoding="utf-8").split()
    with httpx.Client(timeout=120) as client, ThreadPoolExecutor(concurrency) as pool:

        def get(url: str) -> bytes:
            response = client.get(url)
            response.raise_for_status()
            return response.content

        bodies = pool.map(get, urls)
        if mode == "download":
            print(sum(len(hashlib.sha256(body).digest()) and len(body) for body in bodies))
            return
        import icalendar

        events = 0
        for body in bodies:
            events += len(icalendar.Calendar.from_ical(body).walk("VEVENT"))
        print(events)


if __name__ == "__main__":
    main()
