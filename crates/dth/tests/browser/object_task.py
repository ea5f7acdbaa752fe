"""An object task made with the objects wizard between two buckets of an S3 test peer: the source
signed with an access key entered once (stored as a secret by the wizard), the destination with a
secret made on the secrets page; every step is screenshotted, the review's dry run shows as many
objects to copy as were seeded, and once created the task's page shows its counters move live
(without a reload) until the run is done; the task is then DONE. The Rust side then compares the
buckets byte for byte.
The source's object reads are delayed by the harness, so the run lasts a few seconds."""

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

NAME = "photos to the copy bucket"


def field(group, text):
    """The field labelled `text` (exactly, or with the required mark) in `group`."""
    return group.get_by_label(re.compile(rf"^{re.escape(text)}( \*)?$"))


def fill_side(group, bucket, endpoint):
    """Provider "other", its endpoint and the bucket; the region stays empty (us-east-1)."""
    provider = field(group, "Provider")
    # The endpoint fields are swapped in for the provider: the URL is required for "other".
    settled(group.page, lambda: provider.select_option(label="Other S3-compatible service"))
    expect(group.get_by_text("Required for this provider")).to_be_visible()
    field(group, "Endpoint URL").fill(endpoint)
    field(group, "Bucket").fill(bucket)


def next_step(page, name):
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("list", name="Steps").locator("[aria-current=step]")).to_have_text(name)
    return page.get_by_role("group", name=name, exact=True)


def main(ctx):
    page = ctx.pages[0]
    # The source through the harness's slow proxy, the destination at the peer itself.
    src_endpoint, dst_endpoint = env("DTH_S3_ENDPOINT"), env("DTH_S3_DST_ENDPOINT")
    count = env("DTH_OBJECT_COUNT")
    first_admin_sign_in(page)

    step("the destination's key, stored on the secrets page")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Secrets").click()
    form = page.get_by_role("region", name="New secret")
    form.get_by_label("Name", exact=True).fill("copy-bucket-key")
    form.get_by_label("Kind").select_option(label="Access key")
    field(form, "Access key ID").fill(env("DTH_S3_ACCESS_KEY"))
    field(form, "Secret access key").fill(env("DTH_S3_SECRET_KEY"))
    form.get_by_role("button", name="Create secret").click()
    expect(page.get_by_role("heading", name="copy-bucket-key", level=1)).to_be_visible()

    step("wizard, source: a key entered once")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Tasks").click()
    page.get_by_role("link", name="New object task").click()
    page.wait_for_url(f"{URL}/tasks/new/objects")
    expect(page.get_by_role("heading", name="New object task", level=1)).to_be_visible()
    source = page.get_by_role("group", name="Source", exact=True)
    field(source, "Task name").fill(NAME)
    fill_side(source, env("DTH_SRC_BUCKET"), src_endpoint)
    source.get_by_role("radio", name="Enter an access key once").check()
    field(source, "Access key ID").fill(env("DTH_S3_ACCESS_KEY"))
    field(source, "Secret access key").fill(env("DTH_S3_SECRET_KEY"))
    axe(page)
    shot(page, "wizard-1-source")

    step("destination: the stored secret")
    dest = next_step(page, "Destination")
    expect(page.get_by_role("status").filter(has_text="The source key is stored as the secret")).to_be_visible()
    fill_side(dest, env("DTH_DST_BUCKET"), dst_endpoint)
    dest.get_by_role("radio", name="A stored secret").check()
    dest.get_by_label("Secret", exact=True).select_option("copy-bucket-key")
    shot(page, "wizard-2-destination")

    step("options: the defaults (multipart from 16 MiB)")
    options = next_step(page, "Options")
    expect(field(options, "Multipart threshold")).to_have_value(re.compile(r"^16\s?MiB$"))
    shot(page, "wizard-3-options")

    step("schedule: once")
    schedule = next_step(page, "Schedule and alarms")
    schedule.get_by_role("radio", name="Once").check()
    expect(schedule.get_by_text("One run, right after the task is created.")).to_be_visible()
    shot(page, "wizard-4-schedule")

    step("review: the dry run plans every seeded object")
    review = next_step(page, "Review")
    expect(review.get_by_text(NAME, exact=True)).to_be_visible()
    plan = page.get_by_role("heading", name="Dry run: what a run would do now")
    expect(plan).to_be_visible(timeout=TASK_TIMEOUT_MS)
    to_copy = review.locator("[data-plan=copy]")
    expect(to_copy).to_have_text(count)
    expect(review.locator("[data-plan=skip]")).to_have_text("0")
    expect(review.locator("[data-plan=multipart]")).to_have_text("1")
    axe(page)
    shot(page, "wizard-5-review")

    step("create: the task's page, its counters live")
    page.get_by_role("button", name="Create task").click()
    page.wait_for_url(re.compile(r"/tasks/[^/]+$"))
    task_id = page.url.rsplit("/", 1)[1]
    expect(page.get_by_role("heading", name=NAME, level=1)).to_be_visible()
    live = page.get_by_role("region", name="Current run")
    copied = live.locator("[data-counter=copied] .value")
    expect(copied).to_be_visible(timeout=TASK_TIMEOUT_MS)
    first = copied.inner_text()
    assert first != count, f"the run was over before the page showed it (copied {first})"
    page.evaluate("() => { window.dthSamePage = true; }")
    shot(page, "detail-running")
    # Each progress event swaps the counters' HTML: read the live element every time.
    page.wait_for_function(
        "(first) => { const v = document.querySelector('#counters [data-counter=copied] .value');"
        " return v !== null && v.textContent.trim() !== first; }",
        arg=first,
        timeout=TASK_TIMEOUT_MS,
    )
    assert page.evaluate("() => window.dthSamePage === true"), "the page was reloaded"

    step("the run ends: every object copied, the task DONE")
    expect(copied).to_have_text(count, timeout=TASK_TIMEOUT_MS)
    expect(live.locator("[data-counter=found] .value")).to_have_text(count)
    expect(live.locator("[data-counter=dead] .value")).to_have_text("0")
    expect(live.get_by_text("Done", exact=True)).to_be_visible(timeout=TASK_TIMEOUT_MS)
    assert page.evaluate("() => window.dthSamePage === true"), "the page was reloaded"
    wait_task_status(page, task_id, "DONE")
    page.reload()
    head = page.get_by_role("heading", name=NAME, level=1)
    expect(head.get_by_text("Done", exact=True)).to_be_visible()
    expect(page.get_by_role("cell", name="数据/报告 2024.csv")).to_be_visible()
    axe(page)
    shot(page, "detail-done")


scenario(main)
