"""The Information Store's log on a real disk image: durable append rate and soft-recovery replay rate.

Creates a sparse disk image in a temporary directory (1 GiB by default, 4 KB blocks), reserves it as
NODE1 (SCSI-2, as a Physical Disk resource does), mounts a fresh store, and delivers ``--records``
messages of ``--size`` bytes (realistic RFC 5322 text, 50 mailboxes) with no checkpoint in between:
each ``deliver`` returns once its log record is in the image (durable against the death of any
process, the shareddisk guarantee; FileDisk does no fsync). Then NODE2 takes the disk over (bus reset,
reserve) and mounts: the soft recovery replays every record. Prints both rates and a JSON line.

    python scripts/bench_store.py --records 100000 --size 2048
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from nodeagent.exchange.mailstore import MailStore
from shareddisk import FileDisk, Outcome, create_disk


def message(i: int, size: int) -> bytes:
    head = (
        f"From: sender{i % 97}@example.org\r\nTo: user{i % 50}@wolfpack.lab\r\n"
        f"Subject: bench message {i}\r\nMessage-ID: <{i}.bench@example.org>\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog, message %d.\r\n" % i
    body = (line * (size // len(line) + 1))[: max(0, size - len(head))]
    return head + body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=2048, help="bytes per message")
    parser.add_argument("--disk-mb", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wolfpack-bench-store-") as tmp:
        path = Path(tmp) / "EVS1.img"
        disk = create_disk(path, size_bytes=args.disk_mb * 2**20)
        assert disk.reserve("NODE1") is Outcome.OK
        store = MailStore(disk, "NODE1", checkpoint_depth_bytes=2**62)  # build a backlog: no checkpoint
        store.mount()
        started = time.perf_counter()
        for i in range(args.records):
            store.deliver(f"user{i % 50}", message(i, args.size))
            if i and i % 20_000 == 0:
                print(f"  appended {i} records", file=sys.stderr)
        append_s = time.perf_counter() - started
        log_mb = store.log.used_bytes / 2**20
        disk.close()  # NODE1 "dies" (its reservation stays; NODE2 breaks it)

        survivor = FileDisk.open(path)
        survivor.reset("NODE2")
        assert survivor.reserve("NODE2") is Outcome.OK
        recovered = MailStore(survivor, "NODE2")
        stats = recovered.mount()
        survivor.close()
    assert stats.records_replayed == args.records and stats.messages == args.records
    result = {
        "records": args.records,
        "message_bytes": args.size,
        "log_mb": round(log_mb, 1),
        "append_per_s": round(args.records / append_s),
        "append_mb_per_s": round(log_mb / append_s, 1),
        "replay_s": round(stats.seconds, 2),
        "replay_per_s": round(stats.records_replayed / stats.seconds),
    }
    print(
        f"store log: {args.records} records of {args.size} B ({log_mb:.0f} MB of log): "
        f"durable append {result['append_per_s']}/s ({result['append_mb_per_s']} MB/s), "
        f"replay at mount {result['replay_per_s']}/s ({stats.seconds:.2f} s)"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
