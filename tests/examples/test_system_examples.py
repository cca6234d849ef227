"""Examples 00 (the README's crash demo), 14 (router), 15 (events) and 16 (schedules)."""

from __future__ import annotations

import re

from tests.examples.conftest import RunExample


def test_00_process_order_crash__worker_killed_while_waiting__charged_exactly_once(
    run_example: RunExample,
) -> None:
    run = run_example("00-process-order-crash", start_worker=False)

    out = run.output
    assert "[3] agent validate_order: valid=True" in out
    assert "suspended at 'approval'" in out
    assert "[6] kill -9 worker 1" in out
    assert "'status': 'completed'" in out
    assert "step log: validate_order, approval, charge, wait_pickup, notify" in out
    assert "0 crashed" in out
    assert "charge ran 1 time(s) (worker 1)" in out
    assert "shipping e-mail sent 1 time(s) (worker 2)" in out
    # The ledger is the ground truth: one charge line, written by the first worker.
    ledger = (run.scratch / "ledger.log").read_text().splitlines()
    charges = [line for line in ledger if line.startswith("charge ")]
    assert len(charges) == 1, ledger
    pids = re.findall(r"worker (\d) is up \(pid (\d+)\)", out)
    assert [n for n, _ in pids] == ["1", "2"]
    assert charges[0].endswith(f"pid={pids[0][1]}")
    emails = [line for line in ledger if line.startswith("email ")]
    assert len(emails) == 1, ledger
    assert emails[0].endswith(f"pid={pids[1][1]}")


def test_14_router_coordinator__routes_two_questions_to_different_specialists(
    run_example: RunExample,
) -> None:
    run = run_example("14-router-coordinator")

    assert "routed to: billing" in run.output
    assert "routed to: tech" in run.output
    assert "tools used: lookup_invoices" in run.output
    assert "tools used: check_status" in run.output
    assert "route -> support_router, answer -> tech_agent" in run.output


def test_15_event_triggered__events_start_wake_and_batch_workflows(
    run_example: RunExample,
) -> None:
    run = run_example("15-event-triggered")

    out = run.output
    assert out.count("published user/signed_up") == 2
    assert out.count("waits at step 'email_verified'") == 2
    assert "published user.verified/u-ada -> onboarded" in out
    assert "published user.verified/u-linus -> onboarded" in out
    assert "and it published user/onboarded #1" in out
    assert "and it published user/onboarded #2" in out
    assert "got a batch of 5 events" in out
    assert "got a batch of 2 events" in out
    outbox = (run.scratch / "outbox.log").read_text().splitlines()
    assert sorted(line.split()[1] for line in outbox if line.startswith("welcome ")) == [
        "u-ada",
        "u-linus",
    ]
    assert sorted(int(line.split()[1]) for line in outbox if line.startswith("pageviews ")) == [
        2,
        5,
    ]


def test_16_scheduled_workflow__per_key_schedules_show_next_runs_and_trigger_now(
    run_example: RunExample,
) -> None:
    run = run_example("16-scheduled-workflow")

    out = run.output
    assert "team_report  [decorator] '0 9 * * 1-5' Europe/Paris" in out
    assert "key=user-42" in out and "key=user-7" in out
    assert len(re.findall(r"next run: \w{3} \d{4}-\d\d-\d\d 0[89]:00 ", out)) == 3
    assert out.count("'manual': True") == 3
    assert "status=paused, next run: None" in out
    assert "messages sent per run: [1, 1, 1]" in out
    digests = (run.scratch / "digests.log").read_text().splitlines()
    assert sorted(line.split()[1] for line in digests if line.startswith("digest ")) == [
        "user-42",
        "user-7",
    ]
