"""Shared pieces of the portal's browser scenarios (crates/dth/tests/it/portal_browser.rs runs each
scenario file with .tools/browser/bin/python against a `dth serve` it started).

- `scenario(main)`: runs `main(ctx)` with one headless Debian Chromium (a persistent context in a
  fresh directory, removed afterwards; `ctx.pages[0]` is its page) for the whole file; on a failure it saves `<scenario>-failure.png`, prints the
  page's address and text, and exits 1.
- `sign_in`, `first_admin_sign_in`: the sign-in form (and the forced password change).
- `axe(page)`: axe-core over the page; any `serious` or `critical` violation fails.
- `shot(page, name)`: full-page screenshots at 1366x768 and 820x1180 into the screenshots dir.
- `settled(page, action)`: an action that swaps in part of the page, and the wait for the swap.
- `wait_task_status(page, id, status)`: waits for a task's status as the API tells it.
- `api(page, method, path, body)`: a JSON API call with the page's session, CSRF token and Origin,
  as the page's own forms send it.

Selectors go by accessible role and label (get_by_role, get_by_label), never by layout. Nothing
sleeps: every wait is on a condition, with the timeouts set here.

The environment (set by the Rust harness): DTH_URL (the hub), DTH_ADMIN_EMAIL and
DTH_ADMIN_PASSWORD (the first admin and the temporary password `dth serve` printed),
DTH_SCREENSHOTS (where screenshots go), DTH_AXE (axe.min.js), and what each scenario needs.
"""

import json
import os
import sys
import tempfile
import time
import traceback

from playwright.sync_api import Page, expect, sync_playwright

URL = os.environ["DTH_URL"].rstrip("/")
ADMIN_EMAIL = os.environ.get("DTH_ADMIN_EMAIL", "admin@localhost")
# The password the first admin sets in place of the temporary one.
ADMIN_PASSWORD = "Zebra-Crossing-42!"
SCREENSHOTS = os.environ["DTH_SCREENSHOTS"]
AXE_SOURCE_PATH = os.environ["DTH_AXE"]
SCENARIO = os.path.splitext(os.path.basename(sys.argv[0]))[0]

# Milliseconds an action or an expectation waits for its condition.
TIMEOUT_MS = 15_000
# Milliseconds a task may take to reach a state (a run against local peers).
TASK_TIMEOUT_MS = 60_000
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDE = {"width": 1366, "height": 768}
NARROW = {"width": 820, "height": 1180}

expect.set_options(timeout=TIMEOUT_MS)


def env(name: str) -> str:
    """A variable the harness must have set."""
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"{SCENARIO}: {name} is not set (run through portal_browser.rs)")
    return value


def step(message: str) -> None:
    """Says where the scenario is, with the seconds since it started (shown on a failure)."""
    print(f"[{SCENARIO} {time.monotonic() - _STARTED:5.1f}s] {message}", flush=True)


_STARTED = time.monotonic()


def scenario(main) -> None:
    """Runs `main(context)` with one browser for the whole scenario file, then exits."""
    os.makedirs(SCREENSHOTS, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"dth-{SCENARIO}-") as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path="/usr/bin/chromium",
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=WIDE,
            locale="en-US",
            timezone_id="UTC",
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            main(context)
        except BaseException:
            traceback.print_exc()
            for page in context.pages:
                _describe_failure(page)
            context.close()
            raise SystemExit(1) from None
        context.close()
    step("passed")


def _describe_failure(page: Page) -> None:
    try:
        path = os.path.join(SCREENSHOTS, f"{SCENARIO}-failure.png")
        page.screenshot(path=path, full_page=True)
        print(f"--- page {page.url} (screenshot {path}) ---", file=sys.stderr)
        print(page.locator("body").inner_text(timeout=2_000)[:4000], file=sys.stderr)
    except Exception as e:  # the page may be gone; the traceback above says why
        print(f"--- page {page.url}: {e} ---", file=sys.stderr)


def sign_in(page: Page, email: str, password: str) -> None:
    """Signs in through the sign-in form (from wherever the page is)."""
    page.goto(f"{URL}/signin")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(lambda u: "/signin" not in u)


def change_password(page: Page, current: str, new: str) -> None:
    """Fills the password change form and waits until it is left."""
    page.get_by_label("Current password").fill(current)
    page.get_by_label("New password", exact=True).fill(new)
    page.get_by_label("New password, again").fill(new)
    page.get_by_role("button", name="Set password").click()
    page.wait_for_url(lambda u: "/password" not in u)


def first_admin_sign_in(page: Page) -> None:
    """The first admin signs in with the temporary password and sets ADMIN_PASSWORD; ends on the
    overview."""
    sign_in(page, ADMIN_EMAIL, env("DTH_ADMIN_PASSWORD"))
    expect(page).to_have_url(f"{URL}/password?next=%2F")
    change_password(page, env("DTH_ADMIN_PASSWORD"), ADMIN_PASSWORD)
    expect(page).to_have_url(f"{URL}/")


def sign_out(page: Page) -> None:
    """Signs out with the header's button."""
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/signin**")


def settled(page: Page, action) -> None:
    """Runs `action()` (which triggers one htmx request, e.g. a select that swaps in fields) and
    waits until htmx has swapped its answer in."""
    page.evaluate(
        "() => { window.dthSettled = false; document.addEventListener('htmx:afterSettle',"
        " () => { window.dthSettled = true; }, { once: true }); }"
    )
    action()
    page.wait_for_function("() => window.dthSettled === true")


def csrf_token(page: Page) -> str:
    """The session's CSRF token, as the layout hands it to htmx."""
    headers = page.locator("body").get_attribute("hx-headers")
    if not headers:
        raise AssertionError(f"no hx-headers on {page.url}")
    return json.loads(headers)["X-CSRF-Token"]


def api(page: Page, method: str, path: str, body=None, csrf=True, form=None):
    """A request with the page's session cookie (and its CSRF token and Origin unless
    `csrf=False`): JSON `body`, or `form` fields as a form post."""
    headers = {"Origin": URL}
    if csrf:
        headers["X-CSRF-Token"] = csrf_token(page)
    kwargs = {"headers": headers, "fail_on_status_code": False, "max_redirects": 0}
    if body is not None:
        kwargs["data"] = json.dumps(body)
        headers["Content-Type"] = "application/json"
    if form is not None:
        kwargs["form"] = form
    return page.request.fetch(f"{URL}{path}", method=method, **kwargs)


def api_json(page: Page, method: str, path: str, body=None, status=200):
    """`api` that must answer `status`; the answer's JSON (None when empty)."""
    r = api(page, method, path, body)
    if r.status != status:
        raise AssertionError(f"{method} {path}: {r.status} (want {status}): {r.text()}")
    text = r.text()
    return json.loads(text) if text else None


_AXE_SOURCE = None


def axe(page: Page) -> None:
    """Runs axe-core over the page as it is; fails on any serious or critical violation, printing
    each with the nodes it found."""
    global _AXE_SOURCE
    if _AXE_SOURCE is None:
        with open(AXE_SOURCE_PATH, encoding="utf-8") as f:
            _AXE_SOURCE = f.read()
    page.wait_for_load_state("load")
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(_AXE_SOURCE)
    result = page.evaluate(
        "async () => { const r = await axe.run(document, { resultTypes: ['violations'] });"
        " return r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => ({ target: n.target.join(' '), summary: n.failureSummary })) })); }"
    )
    bad = [v for v in result if v["impact"] in ("serious", "critical")]
    for v in result:
        if v not in bad:
            step(f"axe ({v['impact']}) on {page.url}: {v['id']}: {v['help']}")
    if bad:
        lines = [f"axe found {len(bad)} serious or critical violations on {page.url}:"]
        for v in bad:
            lines.append(f"- {v['id']} ({v['impact']}): {v['help']}")
            for n in v["nodes"]:
                lines.append(f"    {n['target']}: {n['summary']}")
        raise AssertionError("\n".join(lines))


def shot(page: Page, name: str) -> None:
    """Full-page screenshots at 1366x768 and 820x1180: <scenario>-<name>-1366.png and -820.png."""
    for size in (WIDE, NARROW):
        page.set_viewport_size(size)
        path = os.path.join(SCREENSHOTS, f"{SCENARIO}-{name}-{size['width']}.png")
        page.screenshot(path=path, full_page=True, animations="disabled")
    page.set_viewport_size(WIDE)


def wait_task_status(page: Page, task_id: str, status: str) -> None:
    """Waits until the API tells the task's status is `status` (polled by the page itself).

    The task's page refreshes its head when the run's stream ends, which can be just before the
    hub records the task's own status; callers check the page after this wait (and a reload)."""
    page.wait_for_function(
        "async ([id, want]) => { const r = await fetch('/api/v1/tasks/' + id);"
        " return r.ok && (await r.json()).status === want; }",
        arg=[task_id, status],
        polling=250,
        timeout=TASK_TIMEOUT_MS,
    )


def task_row(page: Page, name: str):
    """The task list's row of the task named `name`."""
    return page.get_by_role("row").filter(has=page.get_by_role("link", name=name, exact=True))


def find_task_id(page: Page, name: str) -> str:
    """The id of the task named `name`, by the API (the name is unique in a scenario)."""
    tasks = api_json(page, "GET", "/api/v1/tasks")
    for t in tasks:
        if t["name"] == name:
            return t["id"]
    raise AssertionError(f"no task named {name!r} in {[t['name'] for t in tasks]}")
