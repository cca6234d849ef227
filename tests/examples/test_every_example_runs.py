"""Every folder in ``examples/`` is complete and is run end to end by a test here."""

from __future__ import annotations

from pathlib import Path

from .conftest import EXAMPLES_DIR

SEED_EXAMPLES = [
    "01-agent-with-tools",
    "02-structured-output",
    "03-agent-streaming",
    "04-conversational-chat",
    "05-thinking-agent",
    "06-guardrails",
    "07-lifecycle-hooks",
    "08-workflow-basics",
    "09-suspend-resume",
    "10-state-persistence",
    "11-error-handling",
    "12-shared-queues",
    "13-parallel-review",
    "14-router-coordinator",
    "15-event-triggered",
    "16-scheduled-workflow",
]
"""The seed README's example list, in its order (plus 00, the README's crash demo)."""


def example_folders() -> list[str]:
    return sorted(p.name for p in EXAMPLES_DIR.iterdir() if p.is_dir() and p.name[:2].isdigit())


def test_the_seed_examples_all_exist() -> None:
    assert example_folders() == ["00-process-order-crash", *SEED_EXAMPLES]


def test_each_example_has_a_readme_a_worker_and_a_main() -> None:
    for name in example_folders():
        folder = EXAMPLES_DIR / name
        for required in ("README.md", "worker.py", "main.py"):
            assert (folder / required).is_file(), f"examples/{name} has no {required}"
        readme = (folder / "README.md").read_text()
        assert "python main.py" in readme, f"examples/{name}/README.md does not say how to run it"


def test_each_example_is_run_by_a_test() -> None:
    tests = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*_examples.py"))
    missing = [name for name in example_folders() if f'run_example("{name}"' not in tests]
    assert not missing, f"no test runs these examples: {missing}"
