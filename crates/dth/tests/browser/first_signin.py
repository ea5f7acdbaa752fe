"""The bootstrap admin's first sign-in: the temporary password `dth serve` printed, the forced
password change (a weak password is refused with the policy's message), then the overview and the
task list. axe and screenshots on each page."""

from playwright.sync_api import expect

from portal import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    URL,
    axe,
    env,
    scenario,
    shot,
    sign_in,
    change_password,
    step,
)


def main(ctx):
    page = ctx.pages[0]
    temporary = env("DTH_ADMIN_PASSWORD")

    step("the sign-in page, where / sends a visitor")
    page.goto(f"{URL}/")
    expect(page).to_have_url(f"{URL}/signin?next=%2F")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    axe(page)
    shot(page, "signin")

    step("a wrong password is refused")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password", exact=True).fill(temporary + "x")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
    expect(page.get_by_label("Email")).to_have_value(ADMIN_EMAIL)

    step("the temporary password leads to the forced password change")
    sign_in(page, ADMIN_EMAIL, temporary)
    expect(page).to_have_url(f"{URL}/password?next=%2F")
    expect(page.get_by_role("heading", name="Set a new password")).to_be_visible()
    expect(page.get_by_text("Your password is temporary.")).to_be_visible()
    axe(page)
    shot(page, "password")

    step("a weak password is refused with the policy's message")
    page.get_by_label("Current password").fill(temporary)
    page.get_by_label("New password", exact=True).fill("abcdefghij")
    page.get_by_label("New password, again").fill("abcdefghij")
    page.get_by_role("button", name="Set password").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("upper-case letter")
    expect(alert).to_contain_text("digit")
    expect(alert).to_contain_text("symbol")
    expect(page.get_by_text("At least 8 characters.")).to_be_visible()
    axe(page)
    shot(page, "password-weak")

    step("two different new passwords are refused")
    page.get_by_label("Current password").fill(temporary)
    page.get_by_label("New password", exact=True).fill(ADMIN_PASSWORD)
    page.get_by_label("New password, again").fill(ADMIN_PASSWORD + "?")
    page.get_by_role("button", name="Set password").click()
    expect(page.get_by_role("alert")).to_have_text("The two new passwords differ.")

    step("a strong password: on to the overview")
    change_password(page, temporary, ADMIN_PASSWORD)
    expect(page).to_have_url(f"{URL}/")
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    nav = page.get_by_role("navigation", name="Main")
    for link in ["Overview", "Tasks", "Secrets", "Users", "Audit log", "Settings"]:
        expect(nav.get_by_role("link", name=link, exact=True)).to_be_visible()
    expect(nav.get_by_role("link", name="Overview")).to_have_attribute("aria-current", "page")
    expect(page.get_by_role("link", name="New object task")).to_be_visible()
    expect(page.get_by_text("Nothing is running now.")).to_be_visible()
    axe(page)
    shot(page, "overview")

    step("the task list, empty")
    nav.get_by_role("link", name="Tasks", exact=True).click()
    expect(page).to_have_url(f"{URL}/tasks")
    expect(page.get_by_role("heading", name="Tasks", level=1)).to_be_visible()
    expect(page.get_by_text("No tasks yet.")).to_be_visible()
    expect(page.get_by_role("link", name="New image task")).to_be_visible()
    axe(page)
    shot(page, "tasks")

    step("the temporary password no longer signs in; the new one does")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/signin**")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password", exact=True).fill(temporary)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
    sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    expect(page).to_have_url(f"{URL}/")


scenario(main)
