"""Every admin and account page an admin opens after the first sign-in — secrets, users, the audit
log, settings, the profile and the images wizard's first step — read as a person would: each has
its heading and its main control, axe finds no serious problem, and each is shot at both widths."""

from playwright.sync_api import expect

from portal import ADMIN_EMAIL, URL, axe, first_admin_sign_in, scenario, shot, step


def main(ctx):
    page = ctx.pages[0]
    first_admin_sign_in(page)

    pages = [
        ("/secrets", "Secrets", "Create secret", "secrets"),
        ("/users", "Users", "Invite", "users"),
        ("/audit", "Audit log", "Filter", "audit"),
        ("/settings", "Settings", "Save price table", "settings"),
        ("/profile", "Profile", "Create token", "profile"),
        ("/tasks/new/images", "New image task", "Next", "image-wizard"),
    ]
    for path, heading, button, name in pages:
        step(f"{path}: {heading}")
        page.goto(f"{URL}{path}")
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        expect(page.get_by_role("button", name=button).first).to_be_visible()
        axe(page)
        shot(page, name)

    step("the audit log has the first sign-in and the password change")
    page.goto(f"{URL}/audit")
    expect(page.get_by_role("table")).to_contain_text(ADMIN_EMAIL)


scenario(main)
