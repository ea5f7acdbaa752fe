"""Dead items and their retry: an image task made with the wizard reads its source registry with a
stored secret holding a wrong password, so each image fails for good (an auth error is not
retried) and the task's page lists the dead items with the registry's error; the secret's value is
replaced on the secrets page; the dead items are retried from the task's page and the task ends
DONE. The Rust side checks the images at the destination with skopeo."""

import re

from playwright.sync_api import expect

from portal import (
    TASK_TIMEOUT_MS,
    URL,
    axe,
    env,
    first_admin_sign_in,
    scenario,
    settled,
    shot,
    step,
    wait_task_status,
)

NAME = "app images from the private registry"
SECRET = "private-registry-login"
IMAGES = ["app-a:1.0", "team/app-c:3.1"]


def field(group, text):
    """The field labelled `text` (exactly, or with the required mark) in `group`."""
    return group.get_by_label(re.compile(rf"^{re.escape(text)}( \*)?$"))


def registry_login(form, user, password):
    field(form, "Kind").select_option(label="Registry login")
    field(form, "Username").fill(user)
    field(form, "Password or access token").fill(password)


def registry_side(group, address):
    location = field(group, "Location")
    registry = "Registry (Docker Hub, Harbor, Quay, GHCR, any v2 registry)"
    # The kind's fields are swapped in when it changes (the registry is the first kind).
    if location.input_value() != "registry":
        settled(group.page, lambda: location.select_option(label=registry))
    field(group, "Registry address").fill(address)
    field(group, "Verify the TLS certificate").uncheck()


def next_step(page, name):
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("list", name="Steps").locator("[aria-current=step]")).to_have_text(name)
    return page.get_by_role("group", name=name, exact=True)


def counter(page, name):
    return page.get_by_role("region", name="Current run").locator(f"[data-counter={name}] .value")


def main(ctx):
    page = ctx.pages[0]
    user = env("DTH_SRC_REGISTRY_USER")
    first_admin_sign_in(page)

    step("a stored registry login with a wrong password")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Secrets").click()
    form = page.get_by_role("region", name="New secret")
    field(form, "Name").fill(SECRET)
    registry_login(form, user, "not-the-password")
    form.get_by_role("button", name="Create secret").click()
    expect(page.get_by_role("heading", name=SECRET, level=1)).to_be_visible()

    step("the images wizard with that secret")
    page.goto(f"{URL}/tasks/new/images")
    source = page.get_by_role("group", name="Source", exact=True)
    field(source, "Task name").fill(NAME)
    registry_side(source, env("DTH_SRC_REGISTRY"))
    source.get_by_role("radio", name="A stored secret").check()
    field(source, "Secret").select_option(SECRET)
    dest = next_step(page, "Destination")
    registry_side(dest, env("DTH_DST_REGISTRY"))
    dest.get_by_role("radio", name=re.compile(r"^Anonymous")).check()
    images = next_step(page, "Images")
    images.get_by_role("radio", name="A list of images").check()
    field(images, "Images").fill("\n".join(IMAGES))
    schedule = next_step(page, "Schedule and alarms")
    schedule.get_by_role("radio", name="Once").check()
    review = next_step(page, "Review")
    expect(page.get_by_role("heading", name="Dry run: what a run would do now")).to_be_visible(
        timeout=TASK_TIMEOUT_MS
    )
    # The dry run cannot check the images with the wrong password; the task can still be made.
    expect(review.locator("[data-plan=unchecked]")).to_have_text(str(len(IMAGES)))
    shot(page, "review")
    page.get_by_role("button", name="Create task").click()
    page.wait_for_url(re.compile(r"/tasks/[^/]+$"))
    task_url = page.url
    task_id = task_url.rsplit("/", 1)[1]

    step("the task's page: every image dead, with the registry's error")
    expect(counter(page, "dead")).to_have_text(str(len(IMAGES)), timeout=TASK_TIMEOUT_MS)
    expect(counter(page, "copied")).to_have_text("0")
    wait_task_status(page, task_id, "ERROR")
    page.reload()
    head = page.get_by_role("heading", name=NAME, level=1)
    expect(head.get_by_text("Error", exact=True)).to_be_visible()
    page.get_by_label("State", exact=True).select_option(label="dead")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"state=dead"))
    items = page.get_by_role("region", name=re.compile(r"^Items of run"))
    for image in IMAGES:
        row = items.get_by_role("row").filter(has=page.get_by_role("cell", name=image, exact=True))
        expect(row.get_by_text("dead", exact=True)).to_be_visible()
        expect(row).to_contain_text(re.compile(r"authentication failed .*401"))
    expect(page.get_by_role("button", name=f"Retry all {len(IMAGES)} failed")).to_be_visible()
    axe(page)
    shot(page, "dead-items")

    step("the secret's value replaced on the secrets page")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Secrets").click()
    secret_row = page.get_by_role("row").filter(has=page.get_by_role("link", name=SECRET))
    expect(secret_row.get_by_role("link", name=NAME)).to_be_visible()
    secret_row.get_by_role("link", name=f"Replace the value of {SECRET}").click()
    replace = page.get_by_role("region", name="Replace the value")
    registry_login(replace, user, env("DTH_SRC_REGISTRY_PASSWORD"))
    replace.get_by_role("button", name="Replace value").click()
    expect(page.get_by_role("status").filter(has_text="The new value is stored.")).to_be_visible()
    axe(page)
    shot(page, "secret-replaced")

    step("the dead items retried from the task's page")
    page.get_by_role("link", name=NAME).click()
    page.wait_for_url(task_url)
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name=f"Retry all {len(IMAGES)} failed").click()

    step("the task ends DONE, every image copied")
    expect(counter(page, "copied")).to_have_text(str(len(IMAGES)), timeout=TASK_TIMEOUT_MS)
    expect(counter(page, "dead")).to_have_text("0")
    wait_task_status(page, task_id, "DONE")
    page.reload()
    expect(head.get_by_text("Done", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name=re.compile(r"^Retry all"))).to_have_count(0)
    axe(page)
    shot(page, "done")


scenario(main)
