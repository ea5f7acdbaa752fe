"""Stop, clone and delete from the task list: a task on a long schedule (its next run a year
away, so it stays in progress) is stopped, cloned (the copy appears in the list) and deleted after
the confirmation dialog, which names the task; dismissing the dialog keeps it."""

import re

from playwright.sync_api import expect

from portal import (
    URL,
    api_json,
    axe,
    env,
    first_admin_sign_in,
    scenario,
    shot,
    step,
    task_row,
    TASK_TIMEOUT_MS,
)

NAME = "yearly photo archive"


def s3_side(bucket: str) -> dict:
    return {
        "provider": "other",
        "region": env("DTH_S3_REGION"),
        "endpoint_url": env("DTH_S3_ENDPOINT"),
        "bucket": bucket,
        "prefix": "",
        "credentials": {
            "kind": "static",
            "access_key_id": env("DTH_S3_ACCESS_KEY"),
            "secret_access_key": env("DTH_S3_SECRET_KEY"),
            "session_token": None,
        },
    }


def main(ctx):
    page = ctx.pages[0]
    first_admin_sign_in(page)

    step("a task on a yearly schedule, created through the API")
    created = api_json(
        page,
        "POST",
        "/api/v1/tasks",
        {
            "name": NAME,
            "kind": "s3",
            "source": s3_side("src"),
            "destination": s3_side("dst"),
            "schedule": {"cron": "0 0 1 1 *"},
        },
        status=201,
    )
    task_id = created["id"]

    step("the list shows it in progress with a stop button")
    page.goto(f"{URL}/tasks")
    row = task_row(page, NAME)
    stop = row.get_by_role("button", name=f"Stop {NAME}")
    # A new task is STARTING until the scheduler takes it (in progress, waiting for its time).
    expect(row.get_by_text("In progress")).to_be_visible(timeout=TASK_TIMEOUT_MS)
    expect(stop).to_be_visible()
    axe(page)
    shot(page, "list-running")

    step("stop")
    stop.click()
    expect(row.get_by_text("Stopped", exact=True)).to_be_visible()
    expect(stop).to_have_count(0)
    expect(row.get_by_role("button", name=f"Start {NAME}")).to_be_visible()
    assert api_json(page, "GET", f"/api/v1/tasks/{task_id}")["status"] == "STOPPED"

    step("clone: the copy's page, then the copy in the list")
    row.get_by_role("button", name=f"Clone {NAME}").click()
    page.wait_for_url(re.compile(r"/tasks/(?!" + re.escape(task_id) + r"\b)[^/?]+$"))
    clone_id = page.url.rsplit("/", 1)[1]
    page.goto(f"{URL}/tasks")
    copy_row = task_row(page, f"{NAME} (copy)")
    expect(copy_row).to_have_count(1)
    expect(copy_row.get_by_role("link", name=f"{NAME} (copy)")).to_have_attribute(
        "href", f"/tasks/{clone_id}"
    )
    expect(task_row(page, NAME)).to_have_count(1)
    shot(page, "list-cloned")

    step("delete: the dialog names the task; dismissed, the task stays")
    dialogs = []

    def answer(dialog, accept):
        dialogs.append((dialog.type, dialog.message))
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda d: answer(d, False))
    task_row(page, NAME).get_by_role("button", name=f"Delete {NAME}", exact=True).click()
    # The click returns once the dialog was answered (confirm() blocks the page until then).
    assert dialogs == [
        (
            "confirm",
            f"Delete the task “{NAME}” with its runs, items and events? This cannot be undone.",
        )
    ], dialogs
    expect(task_row(page, NAME)).to_have_count(1)

    step("accepted, the task is gone from the list; the copy stays")
    page.once("dialog", lambda d: answer(d, True))
    task_row(page, NAME).get_by_role("button", name=f"Delete {NAME}", exact=True).click()
    expect(task_row(page, NAME)).to_have_count(0)
    expect(page).to_have_url(re.compile(r"/tasks$"))
    assert len(dialogs) == 2 and NAME in dialogs[1][1], dialogs
    expect(task_row(page, f"{NAME} (copy)")).to_have_count(1)
    names = [t["name"] for t in api_json(page, "GET", "/api/v1/tasks")]
    assert names == [f"{NAME} (copy)"], names
    axe(page)
    shot(page, "list-deleted")


scenario(main)
