"""`python -m revocation events import FILE.jsonl`: a file of events, one per line, submitted in chunks.

Unlike an API batch, a file is not all-or-nothing: a resident-register export of a million lines should not
stall on one bad line. A refused line is skipped and the import goes on, so no valid line after it is lost; each
refused line is reported by number, code and reason — never its content, which may hold the very value it was
refused for — and the exit status is 2. A line is refused when it is not an event (malformed_json,
event_too_large, invalid_event, unknown_event_type, my_number_refused) or when applying it is refused or fails
(unknown_old_serial, apply_failed: such a line is also in the stream's dead letters). Running a file again is
safe: events already applied count as duplicates. Should Redis fail mid-file, the import stops and says up to
which line everything was submitted. The file is read in bounded pieces, so its size does not matter.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from revocation.domain.events import MAX_EVENT_BYTES, EventRefused, parse_event_json
from revocation.operations.actions import apply_events
from revocation.services import Services

CHUNK = 500  # events per XADD-and-apply round
LISTED_REFUSALS = 1000  # reasons kept for the final report; the count covers all
PROGRESS_EVERY_S = 5.0  # when stderr is not a terminal


@dataclass
class ImportReport:
    applied: int = 0
    duplicate: int = 0
    queued: int = 0
    refused: int = 0
    reasons: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def submitted(self) -> int:
        return self.applied + self.duplicate + self.queued

    def refuse(self, line: int, error: EventRefused) -> None:
        self.refused += 1
        if len(self.reasons) < LISTED_REFUSALS:
            self.reasons.append((line, error.code, error.message))

    def count(self, lines: list[int], results: list[dict]) -> None:
        for line, result in zip(lines, results, strict=True):
            if result["refused"]:
                self.refuse(line, EventRefused(result["refused"]["error"], result["refused"]["message"]))
            elif result["queued"]:
                self.queued += 1
            elif result["duplicate"]:
                self.duplicate += 1
            else:
                self.applied += 1

    def summary(self) -> str:
        text = f"applied {self.applied}, duplicate {self.duplicate}, refused {self.refused}"
        return text + (f", queued {self.queued} (a worker applies them)" if self.queued else "")


class Progress:
    """On a terminal, a bar redrawn in place; otherwise (a log, a pipe) one line every few seconds."""

    def __init__(self, total_bytes: int):
        self.total = max(total_bytes, 1)
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def show(self, position: int, report: ImportReport, final: bool = False) -> None:
        now = time.monotonic()
        if not (final or self.tty or now - self.last >= PROGRESS_EVERY_S):
            return
        self.last = now
        width = 30
        filled = width * min(position, self.total) // self.total
        text = (f"[{'#' * filled}{'.' * (width - filled)}] {100 * min(position, self.total) // self.total:3d}%  "
                f"{report.submitted} events submitted, {report.refused} refused")
        if self.tty:
            print(f"\r{text}", end="\n" if final else "", file=sys.stderr, flush=True)
        else:
            print(text, file=sys.stderr, flush=True)


def import_events(services: Services, path: Path, actor: str, consumer: str) -> int:
    """Submit every valid line of `path`; 0 if none was refused, else 2."""
    report = ImportReport()
    progress = Progress(path.stat().st_size)
    submitted_through = 0  # every line up to this one was submitted (or refused)
    try:
        with path.open("rb") as handle:
            lines, chunk = [], []
            for number, raw in _lines(handle):
                try:
                    if raw is None:
                        raise EventRefused("event_too_large", f"An event may be at most {MAX_EVENT_BYTES} bytes.")
                    if raw.strip():
                        chunk.append(parse_event_json(raw.strip()))
                        lines.append(number)
                except EventRefused as error:
                    report.refuse(number, error)
                if len(chunk) >= CHUNK:
                    report.count(lines, apply_events(services, chunk, consumer, timeout_s=60))
                    lines, chunk = [], []
                    submitted_through = number
                    progress.show(handle.tell(), report)
            if chunk:
                report.count(lines, apply_events(services, chunk, consumer, timeout_s=60))
            progress.show(handle.tell(), report, final=True)
    except BaseException:  # Redis gone, Ctrl-C: say where to resume, then the usual one-sentence error
        _print_refusals(report)
        done = f"lines 1–{submitted_through} were submitted" if submitted_through else "no line was submitted"
        print(f"stopped: {done} ({report.summary()}); later lines may not have been. Running the file again is "
              "safe: events already applied count as duplicates.", file=sys.stderr)
        raise
    finally:  # even when interrupted, the audit log says what reached the stream
        if report.submitted or report.refused:
            services.audit.record(actor, "events_imported", {
                "file": path.name, "applied": report.applied, "duplicate": report.duplicate,
                "queued": report.queued, "refused": report.refused})
    _print_refusals(report)
    print(report.summary())
    return 2 if report.refused else 0


def _print_refusals(report: ImportReport) -> None:
    for line, code, message in report.reasons:
        print(f"line {line}: refused ({code}): {message}", file=sys.stderr)
    if report.refused > len(report.reasons):
        print(f"… and {report.refused - len(report.reasons)} more refused lines", file=sys.stderr)


def _lines(handle: BinaryIO):
    """(line number, bytes) for each line; bytes is None for a line longer than any event may be, which is
    skipped without being held in memory."""
    limit = MAX_EVENT_BYTES + 2  # room for "\r\n"; parse_event_json checks the exact size
    number = 0
    while raw := handle.readline(limit):
        number += 1
        if len(raw) == limit and not raw.endswith(b"\n"):
            while (rest := handle.readline(64 * 1024)) and not rest.endswith(b"\n"):
                pass
            yield number, None
        else:
            yield number, raw
