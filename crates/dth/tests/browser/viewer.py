"""A viewer, invited by the admin on the users page, sees no create, start, stop, clone or delete
control on the overview, the task list, a task's page and the secrets page; posts forged from the
viewer's own session (with its CSRF token and Origin) to stop or delete a task and to create a
secret are refused with 403, through the portal's forms and the JSON API alike, and a post without
the CSRF token is refused too. Afterwards the admin finds the task and the secrets unchanged."""

import re

from playwright.sync_api import expect

from portal import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    TASK_TIMEOUT_MS,
    URL,
    api,
    api_json,
    axe,
    change_password,
    env,
    first_admin_sign_in,
    scenario,
    shot,
    sign_in,
    sign_out,
    step,
    task_row,
)

TASK = "nightly logs"
VIEWER = "viewer@example.com"
VIEWER_PASSWORD = "Quiet-Observer-77!"


def s3_side(bucket: str) -> dict:
    return {
        "provider": "other",
        "region": env("DTH_S3_REGION"),
        "endpoint_url": env("DTH_S3_ENDPOINT"),
        "bucket": bucket,
        "prefix": "",
        "credentials": {"kind": "secret", "name": "peer-key"},
    }


def expect_no_controls(page):
    """No control of an operator anywhere on the page."""
    main = page.get_by_role("main")
    for name in ["New object task", "New image task", "New secret", "Create secret"]:
        expect(main.get_by_role("link", name=name)).to_have_count(0)
        expect(main.get_by_role("button", name=name)).to_have_count(0)
    # "Stop", "Stop nightly logs"... but not the "Starting" count.
    verbs = re.compile(r"^(Start|Stop|Clone|Delete|Retry|Edit|Replace)\b")
    expect(main.get_by_role("button", name=verbs)).to_have_count(0)
    expect(main.get_by_role("link", name=verbs)).to_have_count(0)


def main(ctx):
    page = ctx.pages[0]
    first_admin_sign_in(page)

    step("the admin stores a secret and creates a task through the API")
    api_json(
        page,
        "PUT",
        "/api/v1/secrets/peer-key",
        {"access_key_id": env("DTH_S3_ACCESS_KEY"), "secret_access_key": env("DTH_S3_SECRET_KEY")},
        status=204,
    )
    task = api_json(
        page,
        "POST",
        "/api/v1/tasks",
        {
            "name": TASK,
            "kind": "s3",
            "source": s3_side("src"),
            "destination": s3_side("dst"),
            "schedule": {"cron": "0 0 1 1 *"},
        },
        status=201,
    )
    task_id = task["id"]

    step("the admin invites a viewer on the users page")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Users").click()
    page.get_by_label("Email").fill(VIEWER)
    page.get_by_label("Name").fill("Vera Viewer")
    page.get_by_label("Role").select_option(label="viewer")
    page.get_by_role("button", name="Invite", exact=True).click()
    once = page.get_by_role("status").filter(
        has=page.get_by_role("heading", name=f"Temporary password of {VIEWER}")
    )
    expect(once).to_be_visible()
    copied = once.get_by_role("button", name="Copy").get_attribute("data-copy")
    temporary = page.locator(f"[id='{copied}']").inner_text().strip()
    assert len(temporary) >= 12, temporary
    shot(page, "invited")

    step("the viewer signs in and sets a password")
    sign_out(page)
    sign_in(page, VIEWER, temporary)
    change_password(page, temporary, VIEWER_PASSWORD)
    expect(page).to_have_url(f"{URL}/")
    me = page.get_by_role("link", name="Vera Viewer")
    expect(me).to_contain_text("viewer")

    step("overview: no controls")
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    nav = page.get_by_role("navigation", name="Main")
    for admin_only in ["Users", "Audit log", "Settings"]:
        expect(nav.get_by_role("link", name=admin_only)).to_have_count(0)
    expect_no_controls(page)
    axe(page)
    shot(page, "overview")

    step("task list: the task, no controls")
    nav.get_by_role("link", name="Tasks").click()
    row = task_row(page, TASK)
    expect(row).to_have_count(1)
    expect(row.get_by_text("In progress")).to_be_visible(timeout=TASK_TIMEOUT_MS)
    expect(page.get_by_role("columnheader", name="Actions")).to_have_count(0)
    expect_no_controls(page)
    axe(page)
    shot(page, "tasks")

    step("the task's page: no controls")
    row.get_by_role("link", name=TASK).click()
    page.wait_for_url(f"{URL}/tasks/{task_id}")
    expect(page.get_by_role("heading", name=TASK, level=1)).to_be_visible()
    expect_no_controls(page)
    axe(page)
    shot(page, "detail")

    step("the secrets page: the list, no form")
    page.goto(f"{URL}/secrets")
    expect(page.get_by_role("heading", name="Secrets", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="peer-key")).to_be_visible()
    expect(page.get_by_label("Secret access key")).to_have_count(0)
    expect_no_controls(page)
    axe(page)
    shot(page, "secrets")

    step("forged posts from the viewer's session are refused with 403")
    forged = [
        ("POST", f"/tasks/{task_id}/stop", None, {}),
        ("POST", f"/tasks/{task_id}/delete", None, {}),
        (
            "POST",
            "/secrets",
            None,
            {"name": "forged", "kind": "access_key", "access_key_id": "AKIAFORGED", "secret_access_key": "forged-secret"},
        ),
        ("POST", f"/api/v1/tasks/{task_id}/stop", None, None),
        ("DELETE", f"/api/v1/tasks/{task_id}", None, None),
        ("PUT", "/api/v1/secrets/forged", {"access_key_id": "AKIAFORGED", "secret_access_key": "forged-secret"}, None),
    ]
    for method, path, body, form in forged:
        r = api(page, method, path, body=body, form=form)
        assert r.status == 403, f"{method} {path} as a viewer: {r.status} {r.text()[:300]}"

    step("a post without the CSRF token is refused too")
    for path in [f"/tasks/{task_id}/stop", f"/tasks/{task_id}/delete", "/signout"]:
        r = api(page, "POST", path, csrf=False, form={})
        assert r.status == 403, f"POST {path} without the token: {r.status} {r.text()[:300]}"
    # The session still works (the refused sign-out did not end it).
    page.reload()
    expect(page.get_by_role("link", name="Vera Viewer")).to_be_visible()

    step("the admin finds the task running and the secrets as they were")
    sign_out(page)
    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    got = api_json(page, "GET", f"/api/v1/tasks/{task_id}")
    assert got["status"] == "IN_PROGRESS", got["status"]
    names = [s["name"] for s in api_json(page, "GET", "/api/v1/secrets")]
    assert names == ["peer-key"], names
    page.goto(f"{URL}/tasks")
    expect(task_row(page, TASK).get_by_role("button", name=f"Stop {TASK}")).to_be_visible()


scenario(main)
