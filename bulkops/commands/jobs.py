"""`bulkops jobs` (the tenant's jobs as a table) and `bulkops cancel|pause|resume|retry`."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from rich.table import Table

from bulkops.commands.client import (
    ApiClient,
    CommandError,
    ExitCode,
    add_target_options,
    api_target,
)
from bulkops.commands.output import age, console
from bulkops.config import Settings
from bulkops.domain import JobStatus, RetryScope

# The API's largest page.
MAX_LIMIT = 500

JOBS = """query($status: [JobStatus!], $operation: String, $first: Int) {
  jobs(status: $status, operation: $operation, first: $first) {
    totalCount
    edges { node { id operation status progress processed total failed createdBy createdAt } }
  }
}"""

JOB_FIELDS = "id status processed total"
ACTIONS = {
    "cancel": (
        "cancelJob",
        "cancel a job: a queued or paused one ends CANCELLED at once, a running one after "
        "its current batch",
    ),
    "pause": ("pauseJob", "pause a queued or running job after its current batch"),
    "resume": ("resumeJob", "queue a paused job again; it continues where it stopped"),
}


def _status(value: str) -> str:
    upper = value.upper()
    if upper not in JobStatus.__members__:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a status ({', '.join(JobStatus.__members__)})"
        )
    return upper


def _limit(value: str) -> int:
    number = int(value)
    if not 1 <= number <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"between 1 and {MAX_LIMIT}")
    return number


def list_jobs(args: argparse.Namespace, settings: Settings) -> int:
    client = ApiClient(*api_target(settings, args.url, args.token))
    page = client.execute(
        JOBS, {"status": args.status, "operation": args.operation, "first": args.limit}
    )["jobs"]
    table = Table("id", "operation", "status", "progress", "created by", "age")
    table.columns[0].no_wrap = True
    table.columns[0].min_width = 36
    for edge in page["edges"]:
        job = edge["node"]
        failed = f", {job['failed']:,} failed" if job["failed"] else ""
        table.add_row(
            job["id"],
            job["operation"],
            job["status"],
            f"{job['progress']:.0%} of {job['total']:,}{failed}",
            job["createdBy"] or "",
            age(datetime.fromisoformat(job["createdAt"])),
        )
    out = console()
    if page["edges"]:
        out.print(table)
    shown = len(page["edges"])
    out.print(f"{shown} of {page['totalCount']} jobs", style="dim", highlight=False)
    return ExitCode.OK


def _refusal(payload: dict[str, Any], job_id: str) -> CommandError:
    if payload.get("code") in ("NOT_FOUND", "INVALID_ID"):
        return CommandError(f"no job {job_id}")
    return CommandError(f"job {job_id}: {payload.get('message') or payload.get('code')}")


def act(args: argparse.Namespace, settings: Settings) -> int:
    """cancel, pause or resume: prints the job's status after it."""
    field = ACTIONS[args.command][0]
    client = ApiClient(*api_target(settings, args.url, args.token))
    result = client.execute(
        f"""mutation($id: ID!) {{ {field}(id: $id) {{
          __typename ... on Job {{ {JOB_FIELDS} }} ... on Rejected {{ code message }} }} }}""",
        {"id": args.job_id},
    )[field]
    if result["__typename"] == "Rejected":
        raise _refusal(result, args.job_id)
    print(f"{result['id']} {result['status']}")
    return ExitCode.OK


def retry(args: argparse.Namespace, settings: Settings) -> int:
    """Prints the new job's id alone, so `bulkops watch "$(bulkops retry ID)"` works."""
    client = ApiClient(*api_target(settings, args.url, args.token))
    result = client.execute(
        """mutation($id: ID!, $scope: RetryScope) { retryJob(id: $id, scope: $scope) {
          __typename ... on JobQueued { job { id } } ... on Rejected { code message } } }""",
        {"id": args.job_id, "scope": args.scope},
    )["retryJob"]
    if result["__typename"] == "Rejected":
        raise _refusal(result, args.job_id)
    print(result["job"]["id"])
    return ExitCode.OK


def add_parsers(sub: Any) -> None:
    """`jobs`, `cancel`, `pause`, `resume` and `retry` on the `bulkops` parser."""
    p = sub.add_parser("jobs", help="the tenant's jobs, newest first, as a table")
    p.add_argument(
        "--status",
        type=_status,
        action="append",
        help="only jobs in this status (QUEUED, RUNNING, PAUSED, CANCELLING, CANCELLED, "
        "SUCCEEDED, PARTIAL, FAILED); repeat for several",
    )
    p.add_argument("--operation", help="only jobs of this operation, e.g. deleteProducts")
    p.add_argument(
        "--limit",
        type=_limit,
        default=20,
        help=f"at most this many jobs (default 20, up to {MAX_LIMIT})",
    )
    add_target_options(p)
    p.set_defaults(handler=list_jobs)
    for name, (_, help_text) in ACTIONS.items():
        p = sub.add_parser(name, help=help_text, description=help_text + ".")
        p.add_argument("job_id", metavar="JOB_ID", help="the job's id")
        add_target_options(p)
        p.set_defaults(handler=act)
    p = sub.add_parser(
        "retry",
        help="a new job over a finished job's failed items (or all of them); prints its id",
    )
    p.add_argument("job_id", metavar="JOB_ID", help="the finished job's id")
    p.add_argument(
        "--scope",
        choices=[scope.value for scope in RetryScope],
        default=RetryScope.FAILED_ITEMS.value,
        help="FAILED_ITEMS (default): only the items that failed; ALL: the whole selection again",
    )
    add_target_options(p)
    p.set_defaults(handler=retry)
