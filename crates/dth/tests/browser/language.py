"""The portal's two languages: the sign-in page switched to Simplified Chinese by its language
link, a signed-in user's language set to Chinese on the profile page (stored with the account:
every page follows, in real strings of the catalog), then back to English; `<html lang>` follows
each switch."""

from playwright.sync_api import expect

from portal import (
    ADMIN_EMAIL,
    URL,
    axe,
    env,
    first_admin_sign_in,
    scenario,
    shot,
    sign_out,
    step,
)

# Strings of the catalog (crates/dth-web/src/portal/catalog) in each language.
NAV = {
    "en": ["Overview", "Tasks", "Secrets", "Users", "Audit log", "Settings"],
    "zh-CN": ["概览", "任务", "凭证", "用户", "审计日志", "设置"],
}


def expect_lang(page, tag):
    expect(page.locator("html")).to_have_attribute("lang", tag)


def expect_nav(page, tag):
    nav = page.get_by_role("navigation", name={"en": "Main", "zh-CN": "主导航"}[tag])
    for name in NAV[tag]:
        expect(nav.get_by_role("link", name=name, exact=True)).to_be_visible()


def main(ctx):
    page = ctx.pages[0]

    step("the sign-in page in the browser's language, English")
    page.goto(f"{URL}/signin")
    expect_lang(page, "en")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    step("its language link: Chinese")
    page.get_by_role("link", name="简体中文").click()
    expect_lang(page, "zh-CN")
    expect(page.get_by_role("heading", name="登录")).to_be_visible()
    expect(page.get_by_label("邮箱")).to_be_visible()
    expect(page.get_by_label("密码", exact=True)).to_be_visible()
    expect(page.get_by_text("首次启动：使用 `dth serve` 打印的临时密码以管理员身份登录。")).to_be_visible()
    axe(page)
    shot(page, "signin-zh")

    step("a wrong password, refused in Chinese")
    page.get_by_label("邮箱").fill(ADMIN_EMAIL)
    page.get_by_label("密码", exact=True).fill("wrong-password")
    page.get_by_role("button", name="登录", exact=True).click()
    expect(page.get_by_role("alert")).to_have_text("邮箱或密码错误。")
    expect_lang(page, "zh-CN")

    step("and back to English by the link")
    page.get_by_role("link", name="English").click()
    expect_lang(page, "en")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    step("signed in, the profile's language setting: Chinese")
    first_admin_sign_in(page)
    expect_lang(page, "en")
    page.get_by_role("link", name="Administrator").click()
    expect(page.get_by_role("heading", name="Profile", level=1)).to_be_visible()
    shot(page, "profile-en")
    page.get_by_label("Language of the portal").select_option(label="简体中文")
    page.get_by_role("button", name="Save").click()
    expect_lang(page, "zh-CN")
    expect(page.get_by_role("heading", name="个人资料", level=1)).to_be_visible()
    expect(page.get_by_label("界面语言")).to_have_value("zh-CN")
    expect_nav(page, "zh-CN")
    axe(page)
    shot(page, "profile-zh")

    step("every page follows: the overview and the task list in Chinese")
    page.get_by_role("link", name="概览", exact=True).click()
    expect_lang(page, "zh-CN")
    expect(page.get_by_role("heading", name="概览", level=1)).to_be_visible()
    expect(page.get_by_role("heading", name="各状态任务数")).to_be_visible()
    expect(page.get_by_text("当前没有正在进行的运行。")).to_be_visible()
    expect(page.get_by_role("link", name="新建对象任务")).to_be_visible()
    axe(page)
    shot(page, "overview-zh")
    page.get_by_role("link", name="任务", exact=True).click()
    expect(page.get_by_role("heading", name="任务", level=1)).to_be_visible()
    expect(page.get_by_text("还没有任务。新建一个任务来复制对象或镜像。")).to_be_visible()
    expect(page.get_by_role("button", name="退出登录")).to_be_visible()
    shot(page, "tasks-zh")

    step("stored with the account, as the API tells it")
    r = page.request.get(f"{URL}/api/v1/me")
    assert r.json().get("language") == "zh-CN", r.text()

    step("back to English on the profile page")
    page.goto(f"{URL}/profile")
    page.get_by_label("界面语言").select_option(label="English")
    page.get_by_role("button", name="保存").click()
    expect_lang(page, "en")
    expect(page.get_by_role("heading", name="Profile", level=1)).to_be_visible()
    expect_nav(page, "en")
    page.get_by_role("link", name="Overview", exact=True).click()
    expect(page.get_by_role("heading", name="Tasks by status")).to_be_visible()
    expect_lang(page, "en")
    sign_out(page)
    expect_lang(page, "en")


scenario(main)
