"""An image task made with the images wizard between two test registries (the source open, the
destination behind Basic auth with a login entered once): a list of images, the review's dry run
with four images to copy, the task DONE on its page with four images copied. The Rust side then
checks each image at the destination with skopeo (manifest digests and every blob)."""

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

NAME = "mirror the app images"
IMAGES = ["app-a:ALL_TAGS", "app-b:2.0", "team/app-c:3.1"]


def field(group, text):
    """The field labelled `text` (exactly, or with the required mark) in `group`."""
    return group.get_by_label(re.compile(rf"^{re.escape(text)}( \*)?$"))


def registry_side(group, address):
    """A plain-HTTP registry at `address` (TLS verification off)."""
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


def main(ctx):
    page = ctx.pages[0]
    first_admin_sign_in(page)

    step("wizard, source: the open registry")
    page.get_by_role("link", name="New image task").click()
    page.wait_for_url(f"{URL}/tasks/new/images")
    expect(page.get_by_role("heading", name="New image task", level=1)).to_be_visible()
    source = page.get_by_role("group", name="Source", exact=True)
    field(source, "Task name").fill(NAME)
    registry_side(source, env("DTH_SRC_REGISTRY"))
    source.get_by_role("radio", name=re.compile(r"^Anonymous")).check()
    axe(page)
    shot(page, "wizard-1-source")

    step("destination: a login entered once")
    dest = next_step(page, "Destination")
    registry_side(dest, env("DTH_DST_REGISTRY") + "/mirror")
    dest.get_by_role("radio", name="Enter a user and password once").check()
    field(dest, "User name").fill(env("DTH_DST_REGISTRY_USER"))
    field(dest, "Password or access token").fill(env("DTH_DST_REGISTRY_PASSWORD"))
    shot(page, "wizard-2-destination")

    step("images: a list")
    images = next_step(page, "Images")
    expect(
        page.get_by_role("status").filter(has_text="The destination key is stored as the secret")
    ).to_be_visible()
    images.get_by_role("radio", name="A list of images").check()
    field(images, "Images").fill("\n".join(IMAGES))
    shot(page, "wizard-3-images")

    step("schedule: once")
    schedule = next_step(page, "Schedule and alarms")
    schedule.get_by_role("radio", name="Once").check()
    shot(page, "wizard-4-schedule")

    step("review: four images to copy")
    review = next_step(page, "Review")
    expect(review.get_by_text(", ".join(IMAGES))).to_be_visible()
    expect(page.get_by_role("heading", name="Dry run: what a run would do now")).to_be_visible(
        timeout=TASK_TIMEOUT_MS
    )
    expect(review.locator("[data-plan=copy]")).to_have_text("4")
    expect(review.locator("[data-plan=up_to_date]")).to_have_text("0")
    expect(review.locator("[data-plan=unchecked]")).to_have_text("0")
    axe(page)
    shot(page, "wizard-5-review")

    step("create: the task runs to DONE")
    page.get_by_role("button", name="Create task").click()
    page.wait_for_url(re.compile(r"/tasks/[^/]+$"))
    task_id = page.url.rsplit("/", 1)[1]
    head = page.get_by_role("heading", name=NAME, level=1)
    expect(head).to_be_visible()
    live = page.get_by_role("region", name="Current run")
    expect(live.locator("[data-counter=copied] .value")).to_have_text("4", timeout=TASK_TIMEOUT_MS)
    expect(live.locator("[data-counter=dead] .value")).to_have_text("0")
    wait_task_status(page, task_id, "DONE")
    page.reload()
    expect(head.get_by_text("Done", exact=True)).to_be_visible()
    for image in ["app-a:1.0", "app-a:latest", "app-b:2.0", "team/app-c:3.1"]:
        expect(page.get_by_role("cell").filter(has_text=image).first).to_be_visible()
    axe(page)
    shot(page, "detail-done")


scenario(main)
