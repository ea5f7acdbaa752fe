"""Sign-in through OpenID Connect: the sign-in page's "Sign in with Test SSO" button, the
provider's own login and consent forms (npm oidc-provider, started by the test), and back on the
hub's overview, signed in as the provider's user with the role its group maps to."""

from playwright.sync_api import expect

from portal import URL, axe, env, scenario, shot, step


def main(ctx):
    page = ctx.pages[0]
    issuer = env("DTH_OIDC_ISSUER")
    login = env("DTH_OIDC_LOGIN")

    step("the sign-in page offers the provider")
    page.goto(f"{URL}/")
    expect(page).to_have_url(f"{URL}/signin?next=%2F")
    button = page.get_by_role("link", name="Sign in with Test SSO")
    expect(button).to_be_visible()
    axe(page)
    shot(page, "signin")

    step("the provider's login form")
    button.click()
    page.wait_for_url(f"{issuer}/**")
    expect(page.get_by_role("button", name="Sign-in")).to_be_visible()
    shot(page, "provider-login")
    # The provider's development form names its fields by placeholder only.
    page.get_by_role("textbox", name="Enter any login").fill(login)
    page.get_by_placeholder("and password").fill("any password")
    page.get_by_role("button", name="Sign-in").click()

    step("the provider's consent form")
    expect(page.get_by_role("button", name="Continue")).to_be_visible()
    shot(page, "provider-consent")
    page.get_by_role("button", name="Continue").click()

    step("back on the hub, signed in")
    page.wait_for_url(f"{URL}/")
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    me = page.get_by_role("link", name="Alice Example")
    expect(me).to_be_visible()
    expect(me).to_contain_text("operator")
    expect(page.get_by_role("link", name="New object task")).to_be_visible()
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Users")).to_have_count(0)
    axe(page)
    shot(page, "overview")

    step("the session is the hub's: the API knows the user")
    r = page.request.get(f"{URL}/api/v1/me")
    assert r.status == 200, r.text()
    assert r.json()["email"] == "alice@example.com", r.text()
    assert r.json()["role"] == "operator", r.text()


scenario(main)
