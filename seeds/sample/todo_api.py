"""A tiny in-memory to-do service with REST-style handlers (framework-agnostic)."""

from datetime import date
from itertools import count

_tasks: dict[int, dict] = {}
_ids = count(1)


def create_task(title: str, due: str | None = None, priority: str = "normal") -> dict:
    """POST /tasks - create a task. `due` is an ISO date; priority is low, normal or high."""
    if not title.strip():
        raise ValueError("title must not be empty")
    if priority not in ("low", "normal", "high"):
        raise ValueError("priority must be low, normal or high")
    task = {"id": next(_ids), "title": title.strip(), "due": due, "priority": priority,
            "done": False}
    _tasks[task["id"]] = task
    return task


def list_tasks(done: bool | None = None, priority: str | None = None) -> list[dict]:
    """GET /tasks - list tasks, optionally filtered by completion and priority."""
    tasks = _tasks.values()
    if done is not None:
        tasks = [t for t in tasks if t["done"] == done]
    if priority is not None:
        tasks = [t for t in tasks if t["priority"] == priority]
    return sorted(tasks, key=lambda t: (t["due"] or "9999-12-31", t["id"]))


def complete_task(task_id: int) -> dict:
    """POST /tasks/{id}/complete - mark a task as done. Raises KeyError if it does not exist."""
    task = _tasks[task_id]
    task["done"] = True
    return task


def delete_task(task_id: int) -> None:
    """DELETE /tasks/{id} - remove a task permanently."""
    del _tasks[task_id]


def overdue_tasks(today: date | None = None) -> list[dict]:
    """GET /tasks/overdue - open tasks whose due date is before today."""
    today_iso = (today or date.today()).isoformat()
    return [t for t in list_tasks(done=False) if t["due"] and t["due"] < today_iso]
