"""What a fault benchmark (``faults.py``, ``network_faults.py``) found, and how it prints it:
each scenario's figures and checks as it ends, then one table of every check; and the loop
that runs the chosen scenarios and turns their checks into the exit status."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.processes import interrupt_on_sigterm, kill_leftovers


@dataclass
class Check:
    what: str
    measured: str
    required: str
    ok: bool


@dataclass
class Outcome:
    scenario: str
    log_dir: Path
    figures: list[tuple[str, str]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.checks) and all(c.ok for c in self.checks)

    def figure(self, name: str, value: object) -> None:
        self.figures.append((name, str(value)))

    def check(self, what: str, measured: str, required: str, ok: bool) -> None:
        self.checks.append(Check(what, measured, required, ok))


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_outcome(outcome: Outcome) -> None:
    print(f"\n== {outcome.scenario} ({outcome.seconds:.0f} s)", flush=True)
    width = max((len(name) for name, _ in outcome.figures), default=0)
    for name, value in outcome.figures:
        print(f"  {name.ljust(width)}  {value}")
    for check in outcome.checks:
        print(
            f"  [{verdict(check.ok)}] {check.what}: {check.measured} (required: {check.required})"
        )
    if outcome.error is not None:
        print(f"  [FAIL] error: {outcome.error}")
    if not outcome.passed:
        print(f"  worker logs: {outcome.log_dir}")
    sys.stdout.flush()


Row = tuple[str, str, str, str]  # scenario (first row only), measured, required, verdict


def table_rows(
    outcomes: list[Outcome], scenario: Callable[[Outcome], str], error: Callable[[str], str]
) -> list[Row]:
    """A row per check, and one for the error if a scenario raised (``error`` picks the line
    of the traceback to show)."""
    rows: list[Row] = []
    for outcome in outcomes:
        name = scenario(outcome)
        for check in outcome.checks:
            rows.append(
                (name, f"{check.what}: {check.measured}", check.required, verdict(check.ok))
            )
            name = ""
        if outcome.error is not None:
            rows.append((name, f"error: {error(outcome.error)}", "no error", "FAIL"))
    return rows


def print_table(outcomes: list[Outcome]) -> None:
    """Plain text, columns aligned; an error by the first line of its traceback."""

    def first_line(error: str) -> str:
        return error.strip().splitlines()[0][:90] if error.strip() else "error"

    rows = table_rows(outcomes, lambda outcome: outcome.scenario, first_line)
    header = ("scenario", "measured", "required", "")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    print("\n" + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths).rstrip())
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    sys.stdout.flush()


def print_markdown(outcomes: list[Outcome]) -> None:
    """A markdown table, each scenario with its duration; an error by the last line of its
    traceback (the exception)."""

    def last_line(error: str) -> str:
        lines = error.strip().splitlines()
        return lines[-1][:150] if lines else "?"

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    rows = table_rows(outcomes, lambda o: f"{o.scenario} ({o.seconds:.0f} s)", last_line)
    print("\n| scenario | measured | required | result |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(cell(c) for c in row) + " |")
    sys.stdout.flush()


# -- running the scenarios ----------------------------------------------------------------------


def add_only_option(parser: argparse.ArgumentParser, scenarios: Sequence[str]) -> None:
    parser.add_argument(
        "--only", help=f"comma-separated scenarios (default: all): {', '.join(scenarios)}"
    )


def chosen_scenarios(
    parser: argparse.ArgumentParser, only: str | None, scenarios: Sequence[str]
) -> list[str]:
    """The scenarios ``--only`` names (every one without it); an unknown name is a usage
    error."""
    if not only:
        return list(scenarios)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in scenarios]
    if unknown or not names:
        parser.error(f"unknown scenario(s) {unknown}; known: {', '.join(scenarios)}")
    return names


def run_scenarios(
    names: Sequence[str],
    run: Callable[[str], Outcome],
    *,
    print_results: Callable[[list[Outcome]], None],
    cleanup: Callable[[], None] = lambda: None,
) -> int:
    """Run and print each scenario in turn; whatever happens (a Ctrl-C or a SIGTERM stops the
    run between or inside scenarios), kill the processes left and ``cleanup``; then print the
    table of what ran. Returns the exit status: 0 when every check passed, 1 otherwise, 130
    when interrupted."""
    interrupt_on_sigterm()
    outcomes: list[Outcome] = []
    interrupted = False
    try:
        for name in names:
            outcome = run(name)
            outcomes.append(outcome)
            print_outcome(outcome)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted", file=sys.stderr)
    finally:
        kill_leftovers()
        cleanup()
    if outcomes:
        print_results(outcomes)
    if interrupted:
        return 130
    return 0 if outcomes and all(o.passed for o in outcomes) else 1
