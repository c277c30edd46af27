"""`dnsbl nominate`, `retest`, `tests`, `queue` and `policy`: the relay-testing loop."""

from __future__ import annotations

import argparse
from typing import Any

from dnsbl.cli.context import Context
from dnsbl.policy import PolicyKind
from dnsbl.relay.evidence import RelayTestView
from dnsbl.relay.states import JobStatus


def register(subparsers: Any) -> None:
    nominate = subparsers.add_parser("nominate", help="queue a relay test of a host")
    nominate.add_argument("address", metavar="ADDR")
    nominate.add_argument("--note", help="why (kept with the nomination)")
    nominate.add_argument("--submitter", default="cli", help="who nominates (default: cli)")
    nominate.add_argument(
        "--dry-run",
        action="store_true",
        help="test and keep the evidence, but list nothing and schedule no grace test",
    )
    nominate.set_defaults(handler=_nominate)

    retest = subparsers.add_parser("retest", help="queue a forced retest of a host (admin)")
    retest.add_argument("address", metavar="ADDR")
    retest.add_argument(
        "--not-forced", action="store_true", help="keep the once-a-day limit (RFC 6471 §3.6)"
    )
    retest.set_defaults(handler=_retest)

    tests = subparsers.add_parser("tests", help="relay tests: verdicts, and evidence for ADDR")
    tests.add_argument("address", nargs="?", metavar="ADDR")
    tests.add_argument("--id", type=int, dest="test_id", help="show this test's evidence")
    tests.add_argument("--limit", type=int, default=20)
    tests.set_defaults(handler=_tests)

    queue = subparsers.add_parser("queue", help="the job queue: counts and recent jobs")
    queue.add_argument("--status", choices=list(JobStatus))
    queue.add_argument("--limit", type=int, default=20)
    queue.set_defaults(handler=_queue)

    policy = subparsers.add_parser("policy", help="never-test and never-list networks")
    actions = policy.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="put a network on a list")
    add.add_argument("kind", choices=list(PolicyKind))
    add.add_argument("network")
    add.add_argument("--reason")
    add.set_defaults(handler=_policy_add)
    remove = actions.add_parser("remove", help="take a network off a list")
    remove.add_argument("kind", choices=list(PolicyKind))
    remove.add_argument("network")
    remove.set_defaults(handler=_policy_remove)
    show = actions.add_parser("list", help="show the lists")
    show.set_defaults(handler=_policy_list)


def _nominate(context: Context, args: argparse.Namespace) -> int:
    from dnsbl.relay.nominations import submit_nomination

    context.store  # noqa: B018 -- make sure every configured zone has its row
    view = submit_nomination(
        context.engine,
        context.settings,
        args.address,
        args.submitter,
        args.note,
        dry_run=args.dry_run,
    )
    where = f", position {view.queue_position}" if view.queue_position else ""
    verdict = f", verdict {view.verdict} (test #{view.test_id})" if view.verdict else ""
    dry = " (dry run: nothing will be listed)" if args.dry_run else ""
    print(f"nomination #{view.id}: {view.address} {view.status}{where}{verdict}{dry}")
    return 0


def _retest(context: Context, args: argparse.Namespace) -> int:
    from dnsbl.relay.schedule import schedule_retest

    job = schedule_retest(
        context.engine, context.settings, args.address, actor="cli", forced=not args.not_forced
    )
    forced = "forced " if job.forced else ""
    print(
        f"job #{job.id}: {forced}{job.kind} of {job.target} {job.status}, due {job.run_after:%F %T}"
    )
    return 0


def _tests(context: Context, args: argparse.Namespace) -> int:
    from dnsbl.relay.evidence import get_test, recent_tests, tests_for

    if args.test_id is not None:
        test = get_test(context.engine, args.test_id)
        if test is None:
            print(f"no relay test #{args.test_id}")
            return 1
        _evidence(test)
        return 0
    if args.address is None:
        found = recent_tests(context.engine, args.limit)
    else:
        found = tests_for(context.engine, args.address, args.limit)
    if not found:
        print("no relay tests" + (f" of {args.address}" if args.address else ""))
        return 1
    for test in found:
        _summary(test)
    if args.address is not None:
        print()
        _evidence(found[0])
    return 0


def _summary(test: RelayTestView) -> None:
    verdict = test.verdict or JobStatus.RUNNING
    listed = f"\tlisted: {', '.join(test.listed_as)}" if test.listed_as else ""
    print(
        f"#{test.id}\t{test.address}\t{verdict}\t{test.started_at:%F %T}\t"
        f"{test.reason or ''}{listed}"
    )


def _greylisting(test: RelayTestView) -> str | None:
    if not test.retries and test.retry_at is None:
        return None
    waiting = f"; next retry at {test.retry_at:%F %T %Z}" if test.retry_at else ""
    return f"{test.retries} retr{'y' if test.retries == 1 else 'ies'}{waiting}"


def _evidence(test: RelayTestView) -> None:
    print(f"relay test #{test.id} of {test.address}: {test.verdict or 'running'}")
    rows = [
        ("reason", test.reason),
        ("started", f"{test.started_at:%F %T %Z}"),
        ("finished", f"{test.finished_at:%F %T %Z}" if test.finished_at else None),
        ("forced", "yes" if test.forced else "no"),
        ("banner", test.banner),
        ("EHLO reply", (test.ehlo_reply or "").replace("\n", " | ") or None),
        ("sent from", test.client_address),
        ("TLS", f"{test.tls_version}, {test.tls_cipher}" if test.tls_version else None),
        ("greylisting", _greylisting(test)),
        ("reverse DNS", test.reverse_name),
        ("forward matches", None if test.forward_matches is None else str(test.forward_matches)),
        ("accepted forms", ", ".join(test.accepted_forms) or None),
        ("listed as", ", ".join(test.listed_as) or None),
    ]
    for label, value in rows:
        if value:
            print(f"  {label + ':':17}{value}")
    for arrival in test.arrivals:
        print(
            f"  arrival:         {arrival.form} token {arrival.token} delivered by "
            f"{arrival.delivered_by} at {arrival.received_at:%F %T}"
        )
    print("\ntranscript:")
    print(test.transcript or "(none)")


def _queue(context: Context, args: argparse.Namespace) -> int:
    from dnsbl.relay.jobs import list_jobs, queue_summary

    summary = queue_summary(context.engine)
    print("  ".join(f"{status}: {count}" for status, count in summary.items()))
    for job in list_jobs(context.engine, args.status, args.limit):
        error = f"\t{job.last_error}" if job.last_error else ""
        print(
            f"#{job.id}\t{job.kind}\t{job.target}\t{job.status}\tattempts {job.attempts}\t"
            f"due {job.run_after:%F %T}{error}"
        )
    return 0


def _policy_add(context: Context, args: argparse.Namespace) -> int:
    from dnsbl.policy import add_policy_network

    view = add_policy_network(context.engine, args.network, args.kind, args.reason, "cli")
    print(f"{view.network} is on the {view.kind} list")
    return 0


def _policy_remove(context: Context, args: argparse.Namespace) -> int:
    from dnsbl.policy import remove_policy_network

    removed = remove_policy_network(context.engine, args.network, args.kind, "cli")
    print(f"{args.network} {'removed from' if removed else 'was not on'} the {args.kind} list")
    return 0 if removed else 1


def _policy_list(context: Context, args: argparse.Namespace) -> int:
    from dnsbl.policy import list_policy_networks

    for view in list_policy_networks(context.engine):
        print(f"{view.kind}\t{view.network}\t{view.reason or ''}")
    return 0
