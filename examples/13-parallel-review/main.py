"""Send two pull requests for review; print each reviewer's verdict and the combined one."""

import asyncio

from polos import PolosClient

CLEAN = '''\
+def monthly_total(orders: list[Order]) -> float:
+    """Sum of the orders' amounts."""
+    return sum(order.amount for order in orders)
'''

RISKY = """\
+def search(request):
+    query = eval(request.args["filter"])
+    for user_id in query["ids"]:
+        db.execute(f"SELECT * FROM orders WHERE user_id = {user_id}")
"""

PULL_REQUESTS = [
    {"title": "Add monthly_total helper", "diff": CLEAN},
    {"title": "Search orders by filter", "diff": RISKY},
]


async def main() -> None:
    async with PolosClient() as client:
        # Both reviews run at the same time, each fanning out to three agents.
        handles = [await client.invoke("review_pull_request", pr) for pr in PULL_REQUESTS]
        reports = [await h.result(timeout=60) for h in handles]

        for handle, report in zip(handles, reports, strict=True):
            verdict = "APPROVED" if report["approved"] else "CHANGES REQUESTED"
            print(f"{report['title']!r}: {verdict}")
            for area, review in report["reviews"].items():
                mark = "ok " if review["approve"] else "NO "
                print(f"  {mark} {area:<12} {review['summary']}")
                for issue in review["issues"]:
                    print(f"        - {issue}")

            # The reviewers were child executions, started together by one step.
            children = (await client.list_executions(parent_id=handle.id)).items
            if len(children) != 3 or len(report["reviews"]) != 3:
                raise SystemExit("expected three reviewers per pull request")
            if any(c.status.value != "completed" for c in children):
                raise SystemExit("a reviewer run did not complete")
            tool_calls = 0
            for child in children:
                steps = await client.list_steps(child.id)
                tool_calls += sum(s.kind == "tool" for s in steps)
            # Parallel: every run started before the first one finished.
            parallel = min(c.completed_at or 0 for c in children) > max(
                c.started_at or 0 for c in children
            )
            names = ", ".join(sorted(c.workflow_id for c in children))
            print(
                f"  {len(children)} reviewer runs ({names}), "
                f"{tool_calls} guideline lookups, ran in parallel: {parallel}\n"
            )


if __name__ == "__main__":
    asyncio.run(main())
