"""The operator console at /ui, in a real headless Chromium (Debian's, driven through its
chromedriver by Selenium) against a real uvicorn: what an operator does from the page, and
the security rules (sessions, CSRF, roles, CSP, no secrets rendered) checked on the wire.

Set ROUTEIQ_CONSOLE_SCREENSHOTS=docs/console to (re)write the README's screenshots while
the browser test runs."""

from __future__ import annotations

import base64
import html
import json
import os
import re
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from routeiq.admin.auth import AdminKey, hash_key
from routeiq.admin.sessions import ConsoleSessions

from support import eventually, grant_everything, plugin, with_manifest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
KEYS = {"admin": "console-admin-key-0123456789", "operator": "console-operator-key-0123456789", "viewer": "console-viewer-key-0123456789"}
MASTER = "sk-console-master-key"
WAIT_S = 60  # a loaded 2-core machine: generous, and every wait is for a condition
SCREENSHOTS = os.environ.get("ROUTEIQ_CONSOLE_SCREENSHOTS")


def console_config(tmp_path: Path, **console: Any) -> dict[str, Any]:
    return {
        "admin": {
            "state_dir": str(tmp_path / "state"),
            "keys": [{"name": f"{role}-key", "sha256": hash_key(key), "role": role} for role, key in KEYS.items()],
            "console": {"poll_s": 1.0, **console},
        },
        "keys": {"enabled": True, "master_key": MASTER},
        "model_list": [
            {"model_name": "routeiq-mock", "litellm_params": {"model": "openai/mock-small", "api_base": "embedded"}, "model_info": {"id": "mock-small", "cost_per_1k_tokens": 0.2, "quality": 0.55}},
            {"model_name": "routeiq-mock", "litellm_params": {"model": "openai/mock-large", "api_base": "embedded"}, "model_info": {"id": "mock-large", "cost_per_1k_tokens": 2.0, "quality": 0.8}},
        ],
    }


# A schema with a rule the browser does not check (`not`) and a secret: the server's refusal
# is shown at the field, and a secret left blank keeps its running value.
TAGGER_SCHEMA = {
    "type": "object",
    "properties": {"tag": {"type": "string", "not": {"const": "forbidden"}}, "api_key": {"type": "string", "writeOnly": True}},
}


@pytest.fixture
def gateway(make_app: Callable[..., Any], live: Callable[[Any], str], guests: dict[str, Path], tmp_path: Path) -> tuple[Any, str]:
    tagger = tmp_path / "tagger-schema.wasm"
    tagger.write_bytes(with_manifest(guests["tagger"].read_bytes(), {"name": "tagger", "version": "1.0.0", "capabilities": [], "config_schema": TAGGER_SCHEMA}))
    plugins = [
        plugin("tagger", tagger, config={"tag": "console", "api_key": "sk-upstream-secret-value"}),
        plugin("rate_limiter", guests["rate_limiter"], config={"limit": 100, "window_s": 60}),
    ]
    app = make_app(plugins, **console_config(tmp_path))
    return app, live(app)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    for tool in (CHROMIUM, CHROMEDRIVER):
        assert os.access(tool, os.X_OK), f"{tool} is missing: run ./dev setup (Debian packages chromium, chromium-driver)"
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900", "--lang=en-US"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver path is given: Selenium Manager never runs (no downloads).
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    driver.set_script_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: WebDriver) -> WebDriverWait:
    return WebDriverWait(driver, WAIT_S)


def login(driver: WebDriver, base: str, role: str) -> None:
    driver.delete_all_cookies()
    driver.get(base + "/ui/")
    wait(driver).until(EC.url_contains("/ui/login"))
    driver.find_element(By.ID, "key").send_keys(KEYS[role])
    driver.find_element(By.ID, "login").click()
    wait(driver).until(EC.presence_of_element_located((By.ID, "logout")))


def visible_text(driver: WebDriver, element_id: str) -> str:
    element = wait(driver).until(EC.visibility_of_element_located((By.ID, element_id)))
    return element.text


def csp_violations(driver: WebDriver) -> list[str]:
    """Refused by the CSP, or a script error (refused API calls are logged too: not these)."""
    return [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"] or "Uncaught" in e["message"]]


def unlabeled_controls(driver: WebDriver) -> list[str]:
    """Form controls of the page a screen reader cannot name (no <label>, no aria-label)."""
    return list(
        driver.execute_script(
            "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]"
            ".filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !(e.tagName === 'BUTTON' && e.textContent.trim()))"
            ".map(e => e.outerHTML);"
        )
    )


def screenshot(driver: WebDriver, name: str, top: bool = True) -> None:
    """The page at laptop width, from the top (or from where it is scrolled to) down to its
    end or 1600 px, into SCREENSHOTS (Chrome's own full-page capture, through CDP)."""
    if not SCREENSHOTS:
        return
    y = 0 if top else int(driver.execute_script("return window.scrollY"))
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": y, "width": int(size["width"]), "height": min(int(size["height"]) - y, 1600), "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip})
    Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
    (Path(SCREENSHOTS) / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))


def admin_api(base: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, base + path, headers={"authorization": f"Bearer {KEYS['admin']}"}, timeout=30, trust_env=False, **kwargs)


def test_an_operator_does_the_admin_work_from_the_page(gateway: tuple[Any, str], browser: WebDriver, guests: dict[str, Path], tmp_path: Path) -> None:
    app, base = gateway
    d = browser
    # Some traffic for the charts and the spend report: a virtual key made with the master key.
    made = httpx.post(base + "/key/generate", json={"key_alias": "traffic"}, headers={"authorization": f"Bearer {MASTER}"}, timeout=30, trust_env=False).json()
    for _ in range(3):
        chat = httpx.post(base + "/v1/chat/completions", json={"model": "routeiq-mock", "messages": [{"role": "user", "content": "hi"}]}, headers={"authorization": f"Bearer {made['key']}"}, timeout=30, trust_env=False)
        assert chat.status_code == 200, chat.text

    login(d, base, "admin")
    # Overview: charts and tables fill from /ui/live without a reload.
    wait(d).until(lambda _: int(d.find_element(By.TAG_NAME, "body").get_attribute("data-live-updates") or 0) >= 3)
    assert d.find_elements(By.CSS_SELECTOR, "[data-chart='rps'] svg polyline")
    assert "this worker" in d.find_element(By.CSS_SELECTOR, "[data-live='nodes']").text
    screenshot(d, "overview")

    # The plugins, as configured, with state, ABI and capabilities.
    d.get(base + "/ui/plugins")
    rows = {r.get_attribute("data-plugin"): r.text for r in d.find_elements(By.CSS_SELECTOR, "tr[data-plugin]")}
    assert list(rows) == ["tagger", "rate_limiter"]
    assert "ready" in rows["rate_limiter"] and "0.2.1" in rows["rate_limiter"]
    screenshot(d, "plugins")

    # A secret in a plugin's config is never rendered back.
    d.get(base + "/ui/plugins/tagger")
    assert "sk-upstream-secret-value" not in d.page_source
    secret = wait(d).until(EC.presence_of_element_located((By.ID, "cfg-api_key")))
    assert secret.get_attribute("type") == "password" and secret.get_attribute("value") == "" and secret.get_attribute("placeholder") == "unchanged (secret)"
    # What only the server checks is refused there and shown at its field; nothing applied.
    tag = d.find_element(By.ID, "cfg-tag")
    tag.clear()
    tag.send_keys("forbidden")
    d.find_element(By.ID, "config-review").click()
    assert visible_text(d, "config-diff-text") == '- tag: "console"\n+ tag: "forbidden"'  # the secret is not part of it
    d.find_element(By.ID, "config-apply").click()
    assert "should not be valid" in visible_text(d, "cfg-tag-error")
    assert visible_text(d, "config-error").startswith("Refused by the server, nothing was applied: config.tag:")
    tag.clear()
    tag.send_keys("edited")
    d.find_element(By.ID, "config-review").click()
    d.find_element(By.ID, "config-apply").click()
    visible_text(d, "config-ok")
    expected = {"tag": "edited", "api_key": "sk-upstream-secret-value"}  # the secret kept
    assert eventually(lambda: json.loads(admin_api(base, "GET", "/admin/plugins/tagger").json()["config"]) == expected, timeout=WAIT_S)

    # Config form from the manifest's schema: a violation is shown at its field, nothing sent.
    d.get(base + "/ui/plugins/rate_limiter")
    window = wait(d).until(EC.presence_of_element_located((By.ID, "cfg-window_s")))
    assert window.get_attribute("value") == "60"
    window.clear()
    window.send_keys("0")
    d.find_element(By.ID, "config-review").click()
    assert visible_text(d, "cfg-window_s-error") == "must be ≥ 1"
    assert window.get_attribute("aria-invalid") == "true"
    assert json.loads(admin_api(base, "GET", "/admin/plugins/rate_limiter").json()["config"]) == {"limit": 100, "window_s": 60}
    # The server checks again: a type the form cannot send is refused there and shown too.
    refused = d.execute_async_script(
        """const done = arguments[0];
        fetch('/admin/plugins/rate_limiter/config', {method: 'PATCH', headers: {'content-type': 'application/merge-patch+json',
          'x-csrf-token': document.querySelector('meta[name=csrf-token]').content}, body: JSON.stringify({window_s: 'soon'})})
          .then(r => r.json().then(j => done([r.status, j.error.code])));"""
    )
    assert refused == [400, "schema_violation"]
    # A valid edit: the diff against the running config first, then applied live.
    window.clear()
    window.send_keys("30")
    d.find_element(By.ID, "config-review").click()
    assert visible_text(d, "config-diff-text") == "- window_s: 60\n+ window_s: 30"
    screenshot(d, "plugin-config", top=False)
    assert unlabeled_controls(d) == []  # the generated form, the actions, the upload
    d.find_element(By.ID, "config-apply").click()
    assert "Applied" in visible_text(d, "config-ok")
    assert eventually(lambda: json.loads(admin_api(base, "GET", "/admin/plugins/rate_limiter").json()["config"]) == {"limit": 100, "window_s": 30}, timeout=WAIT_S)

    # Quarantine and release; the state badge follows.
    d.get(base + "/ui/plugins/rate_limiter")
    wait(d).until(EC.element_to_be_clickable((By.ID, "quarantine"))).click()
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "plugin-state"), "quarantined"))
    assert admin_api(base, "GET", "/admin/plugins/rate_limiter").json()["state"] == "quarantined"
    wait(d).until(EC.element_to_be_clickable((By.ID, "release"))).click()
    wait(d).until(EC.text_to_be_present_in_element((By.ID, "plugin-state"), "ready"))
    assert admin_api(base, "GET", "/admin/plugins/rate_limiter").json()["state"] == "ready"

    # Hot swap by upload: a module the host refuses shows why, the old one keeps serving ...
    before = admin_api(base, "GET", "/admin/plugins/tagger").json()["sha256"]
    d.get(base + "/ui/plugins/tagger")
    d.find_element(By.ID, "module-file").send_keys(str(guests["hostile_import"]))
    d.find_element(By.ID, "swap").click()
    assert visible_text(d, "swap-error").startswith("module refused, the old one stays:")
    assert admin_api(base, "GET", "/admin/plugins/tagger").json()["sha256"] == before
    # ... and one it accepts serves at once.
    fresh = tmp_path / "tagger-v2.wasm"
    fresh.write_bytes(with_manifest(guests["tagger"].read_bytes(), {"name": "tagger", "version": "2.0.0", "capabilities": []}))
    d.find_element(By.ID, "module-file").send_keys(str(fresh))
    d.find_element(By.ID, "swap").click()
    shown = visible_text(d, "swap-ok")
    swapped = admin_api(base, "GET", "/admin/plugins/tagger").json()["sha256"]
    assert swapped != before and shown == f"Swapped: now serving sha256 {swapped}"

    # Keys: create one (shown once), it works; revoke it, it is refused.
    d.get(base + "/ui/keys")
    d.find_element(By.ID, "k-alias").send_keys("from-the-console")
    d.find_element(By.ID, "k-budget").send_keys("0.5")
    d.find_element(By.ID, "key-create").click()
    new_key = wait(d).until(lambda _: d.find_element(By.ID, "new-key-value").get_attribute("value"))
    assert new_key.startswith("sk-")
    key_header = {"authorization": f"Bearer {new_key}"}
    assert httpx.get(base + "/v1/models", headers=key_header, timeout=30, trust_env=False).status_code == 200
    row = wait(d).until(EC.presence_of_element_located((By.XPATH, "//tbody[@id='key-rows']/tr[td[2][text()='from-the-console']]")))
    assert new_key not in row.text and "0.5" in row.get_attribute("innerHTML")
    screenshot(d, "keys")
    assert unlabeled_controls(d) == []
    row.find_element(By.CSS_SELECTOR, "button[data-key-action='delete']").click()
    d.switch_to.alert.accept()
    wait(d).until(EC.invisibility_of_element_located((By.XPATH, "//tbody[@id='key-rows']/tr[td[2][text()='from-the-console']]")))
    revoked = httpx.get(base + "/v1/models", headers=key_header, timeout=30, trust_env=False)
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "invalid_api_key"
    assert new_key not in d.page_source  # the next render has only its key_name

    # Teams: create one; it is listed (and offered to new keys).
    d.find_element(By.ID, "t-id").send_keys("ops-team")
    d.find_element(By.ID, "t-budget").send_keys("10")
    d.find_element(By.ID, "team-create").click()
    wait(d).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#team-rows tr[data-team='ops-team']")))
    assert [t["team_id"] for t in httpx.get(base + "/team/list", headers={"authorization": f"Bearer {MASTER}"}, timeout=30, trust_env=False).json()] == ["ops-team"]

    # Routing: the artifact upload answers with the API's refusal for a file that is not one.
    bogus = tmp_path / "not-an-artifact.json"
    bogus.write_text('{"strategy": "contextual_bandit"}')
    d.get(base + "/ui/routing")
    d.find_element(By.ID, "artifact-file").send_keys(str(bogus))
    d.find_element(By.ID, "artifact-load").click()
    assert visible_text(d, "artifact-error").startswith("artifact refused, the strategy in use stays:")

    for page, expect in (("routing", "mock-large"), ("tools", "No MCP tools"), ("audit", "Audit log")):
        d.get(f"{base}/ui/{page}")
        assert expect in d.find_element(By.TAG_NAME, "main").text
        screenshot(d, page)

    # CSRF: the session cookie alone changes nothing.
    refused = d.execute_async_script(
        "const done = arguments[0]; fetch('/admin/plugins/tagger/quarantine', {method: 'POST'}).then(r => r.json().then(j => done([r.status, j.error.code])));"
    )
    assert refused == [403, "csrf_token_missing"]
    assert admin_api(base, "GET", "/admin/plugins/tagger").json()["state"] == "ready"
    assert not csp_violations(d)

    # Logout ends the session: the page goes to login, and the old cookie is refused.
    cookie = d.get_cookie("routeiq_console")["value"]
    d.find_element(By.ID, "logout").click()
    wait(d).until(EC.url_contains("/ui/login"))
    stale = httpx.get(base + "/admin/plugins", headers={"cookie": f"routeiq_console={cookie}"}, timeout=30, trust_env=False)
    assert stale.status_code == 401


def test_a_viewer_sees_no_write_controls_and_is_refused_anyway(gateway: tuple[Any, str], browser: WebDriver) -> None:
    _, base = gateway
    d = browser
    login(d, base, "viewer")
    d.get(base + "/ui/plugins/rate_limiter")
    assert "window_s" in d.find_element(By.ID, "config-view").text
    for control in ("quarantine", "release", "swap-form", "config-form"):
        assert not d.find_elements(By.ID, control), control
    d.get(base + "/ui/keys")
    assert not d.find_elements(By.ID, "key-form") and not d.find_elements(By.CSS_SELECTOR, "button[data-key-action]")
    # The server enforces the role: a viewer's session with its CSRF token still gets 403.
    answers = d.execute_async_script(
        """const done = arguments[0];
        const h = {'x-csrf-token': document.querySelector('meta[name=csrf-token]').content, 'content-type': 'application/json'};
        Promise.all([fetch('/admin/plugins/tagger/quarantine', {method: 'POST', headers: h}), fetch('/key/generate', {method: 'POST', headers: h, body: '{}'})])
          .then(rs => done(rs.map(r => r.status)));"""
    )
    assert answers == [403, 403]
    # Keyboard: every control has a label, and Tab reaches the skip link first.
    d.get(base + "/ui/audit")
    assert unlabeled_controls(d) == []
    Select(d.find_element(By.ID, "f-plugin"))  # the filters are labelled selects
    body = d.find_element(By.TAG_NAME, "body")
    body.send_keys("\ue004")  # Tab: the skip link first
    assert d.switch_to.active_element.get_attribute("class") == "skip"


def session_cookies(answer: httpx.Response) -> list[Any]:
    """The routeiq_console Set-Cookies of an answer, parsed (flags included)."""
    return [SimpleCookie(h)["routeiq_console"] for h in answer.headers.get_list("set-cookie") if h.startswith("routeiq_console=")]


def session_cookie(answer: httpx.Response) -> Any:
    found = session_cookies(answer)
    return found[0] if found else None


def _login_cookie(client: httpx.Client, key: str) -> httpx.Response:
    form = client.get("/ui/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text)
    assert token is not None
    return client.post("/ui/login", data={"login_token": token.group(1), "key": key})


def test_sessions_csrf_headers_and_secrets_on_the_wire(make_app: Callable[..., Any], live: Callable[[Any], str], guests: dict[str, Path], tmp_path: Path) -> None:
    app = make_app([plugin("tagger", guests["tagger"], config={"tag": "x", "client_secret": "hunter2-hunter2"})], **console_config(tmp_path))
    base = live(app)
    with httpx.Client(base_url=base, timeout=30, trust_env=False, follow_redirects=False) as client:
        assert client.get("/ui/").headers["location"] == "/ui/login"
        # After login, back to the page that asked for it; never to another site.
        assert client.get("/ui/audit?plugin=tagger").headers["location"] == "/ui/login?next=%2Fui%2Faudit%3Fplugin%3Dtagger"
        for asked, lands in (("/ui/audit?plugin=tagger", "/ui/audit?plugin=tagger"), ("https://evil.example/", "/ui/"), ("/ui//evil.example", "/ui/")):
            with httpx.Client(base_url=base, timeout=30, trust_env=False) as other:
                form = other.get("/ui/login", params={"next": asked})
                token = re.search(r'name="login_token" value="([^"]+)"', form.text)
                assert token is not None
                answer = other.post("/ui/login", data={"login_token": token.group(1), "key": KEYS["viewer"], "next": asked})
                assert answer.status_code == 303 and answer.headers["location"] == lands, asked
        # A login without the form's token (login CSRF) or with a wrong key gets no session.
        assert client.post("/ui/login", data={"key": KEYS["admin"]}).status_code == 403
        wrong = _login_cookie(client, "not-a-key")
        assert wrong.status_code == 401 and session_cookie(wrong) is None
        done = _login_cookie(client, KEYS["operator"])
        assert done.status_code == 303
        cookie = session_cookie(done)
        assert cookie["httponly"] and cookie["samesite"].lower() == "strict" and not cookie["secure"]  # plain http, not behind_tls
        # Only for the console and the APIs it calls: the LLM API, plugins and upstream never get it.
        assert sorted(c["path"] for c in session_cookies(done)) == ["/admin", "/key", "/spend", "/team", "/ui"]
        echoed = client.get("/echo/x").json()
        assert not any(name == "cookie" and "routeiq_console" in value for name, value in echoed["headers"])
        assert KEYS["operator"] not in cookie.value and hash_key(KEYS["operator"]) not in cookie.value

        unknown = client.get("/ui/no-such-page")
        assert unknown.status_code == 404 and "content-security-policy" in unknown.headers
        page = client.get("/ui/plugins/tagger")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert not re.search(r"<script(?![^>]*\bsrc=)", page.text) and " style=" not in page.text and " on" + "click=" not in page.text
        assert "hunter2-hunter2" not in page.text
        shown = re.search(r'data-config="([^"]*)"', page.text)
        assert shown is not None and json.loads(html.unescape(shown.group(1))) == {"tag": "x", "client_secret": "••••••"}
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
        assert csrf is not None

        # CSRF: missing or wrong token refused; the right one, with the operator's role, works.
        assert client.post("/admin/plugins/tagger/quarantine").json()["error"]["code"] == "csrf_token_missing"
        assert client.post("/admin/plugins/tagger/quarantine", headers={"x-csrf-token": "forged"}).status_code == 403
        assert app.state.gateway.plugin("tagger").state == "ready"
        assert client.post("/admin/plugins/tagger/quarantine", headers={"x-csrf-token": csrf.group(1)}).status_code == 200
        assert client.post("/admin/plugins/tagger/release", headers={"x-csrf-token": csrf.group(1)}).status_code == 200
        # An operator may not swap modules (admin): the API's role check, for sessions too.
        assert client.post("/admin/plugins/tagger/module", content=b"\0asm", headers={"x-csrf-token": csrf.group(1)}).status_code == 403
        # A tampered cookie is no session.
        forged = cookie.value[:-3] + ("AAA" if not cookie.value.endswith("AAA") else "BBB")
        assert httpx.get(base + "/admin/plugins", headers={"cookie": f"routeiq_console={forged}"}, timeout=30, trust_env=False).status_code == 401

        # Logout needs the token too; then the cookie is gone and refused if replayed.
        assert client.post("/ui/logout", data={"csrf": "nope"}).status_code == 403
        out = client.post("/ui/logout", data={"csrf": csrf.group(1)})
        assert out.status_code == 303 and out.headers["location"] == "/ui/login"
        assert httpx.get(base + "/admin/plugins", headers={"cookie": f"routeiq_console={cookie.value}"}, timeout=30, trust_env=False).status_code == 401


def test_session_cookie_is_secure_behind_tls(make_app: Callable[..., Any], live: Callable[[Any], str], tmp_path: Path) -> None:
    base = live(make_app([], **console_config(tmp_path, behind_tls=True)))
    with httpx.Client(base_url=base, timeout=30, trust_env=False) as client:
        form = client.get("/ui/login")
        login_cookie = SimpleCookie(form.headers["set-cookie"])["routeiq_console_login"]
        assert login_cookie["secure"]  # the login form's token cookie too
        token = re.search(r'name="login_token" value="([^"]+)"', form.text)
        assert token is not None
        # The test talks plain http to what a TLS proxy would front: send the Secure cookie by hand.
        done = httpx.post(
            base + "/ui/login", data={"login_token": token.group(1), "key": KEYS["viewer"]}, headers={"cookie": f"routeiq_console_login={login_cookie.value}"}, timeout=30, trust_env=False
        )
        cookie = session_cookie(done)
        assert cookie is not None and cookie["secure"] and cookie["httponly"]


def test_sessions_expire_and_end_with_their_key(tmp_path: Path) -> None:
    now = [1000.0]
    key = AdminKey("ops", hash_key("k1"), "operator")
    sessions = ConsoleSessions([key], lambda: b"s" * 32, ttl_s=60, clock=lambda: now[0])
    token, session = sessions.issue(key)
    assert sessions.verify(token) == session
    now[0] += 61
    assert sessions.verify(token) is None  # expired
    now[0] = 1000.0
    replaced = ConsoleSessions([AdminKey("ops", hash_key("k2"), "operator")], lambda: b"s" * 32, ttl_s=60, clock=lambda: now[0])
    assert replaced.verify(token) is None  # the key named ops was replaced: its sessions end
    other_secret = ConsoleSessions([key], lambda: b"t" * 32, ttl_s=60, clock=lambda: now[0])
    assert other_secret.verify(token) is None


def test_console_off_serves_nothing(make_app: Callable[..., Any], live: Callable[[Any], str], tmp_path: Path) -> None:
    base = live(make_app([], **console_config(tmp_path, enabled=False)))
    assert httpx.get(base + "/ui/login", timeout=30, trust_env=False).status_code == 404


def test_audit_plugin_and_tools_pages_show_what_happened(make_app: Callable[..., Any], live: Callable[[Any], str], guests: dict[str, Path], tmp_path: Path) -> None:
    # The probe may read the limiter's shared data, not write it.
    policy = {**grant_everything(["probe", "broken"], kv={"read": ["rate_limiter"]}), "tools": {"unit_convert": {"unpinned": True}}}
    mcp = {"tools": [{"name": "unit_convert", "wasm": str(guests["unit_convert"]), "allow": {"teams": ["ops"], "admin_role": "operator"}}]}
    plugins = [plugin("probe", guests["hostcall_probe"]), plugin("broken", guests["hostile_import"], on_startup_failure="continue")]
    app = make_app(plugins, policy=policy, mcp=mcp, **console_config(tmp_path))
    base = live(app)
    # The probe writes into another plugin's shared-data namespace: refused and audited.
    refused = httpx.get(base + "/probe", headers={"x-probe": "kv", "x-kv-put": "rate_limiter/forged=0", "x-request-id": "req-audit-1"}, timeout=30, trust_env=False)
    assert refused.status_code == 200
    with httpx.Client(base_url=base, timeout=30, trust_env=False) as client:
        assert _login_cookie(client, KEYS["viewer"]).status_code == 303
        audit = client.get("/ui/audit", params={"plugin": "probe", "reason": "kv_namespace"}).text
        assert "req-audit-1" in audit and "proxy_set_shared_data" in audit and "1 record" in audit
        assert "No refusal matches this filter" in client.get("/ui/audit", params={"reason": "ssrf"}).text
        page = client.get("/ui/plugins/probe").text
        assert re.search(r"<td>proxy_set_shared_data</td><td>kv_namespace</td><td>1</td>", page)
        # A plugin left out at startup is listed as failed, with its error.
        listed = client.get("/ui/plugins")
        assert listed.status_code == 200 and "state-failed" in listed.text and "env.proxy_does_not_exist" in listed.text
        assert client.get("/ui/").status_code == 200
        tools = client.get("/ui/tools").text
        assert "unit_convert" in tools and "team ops, admin keys (operator or above)" in tools


def test_a_session_works_on_every_replica_and_logout_ends_it_on_all(make_app: Callable[..., Any], live: Callable[[Any], str], redis_url: str, tmp_path: Path) -> None:
    """Two nodes sharing Redis and one session_secret: a login on one is a session on the
    other, and a logout on one ends it on both."""
    prefix = f"console-{os.getpid()}-{tmp_path.name}"
    kv = {"backend": "redis", "url": redis_url, "prefix": prefix}
    nodes = []
    for name in ("a", "b"):
        config = console_config(tmp_path / name, session_secret="replicas-share-this-secret")
        nodes.append(live(make_app([], kv=kv, replicas={"node_name": f"node-{name}"}, **config)))
    with httpx.Client(base_url=nodes[0], timeout=30, trust_env=False) as a:
        assert _login_cookie(a, KEYS["operator"]).status_code == 303
        cookie = a.cookies.get("routeiq_console", path="/ui")
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', a.get("/ui/").text)
        assert csrf is not None
        # The overview lists every node sharing the operator state, with its version.
        assert eventually(lambda: len(a.get("/ui/live").json()["nodes"]["nodes"]) == 2, timeout=WAIT_S)
        assert a.get("/ui/live").json()["nodes"]["shared"] is True
        on_b = {"cookie": f"routeiq_console={cookie}"}
        assert httpx.get(nodes[1] + "/admin/plugins", headers=on_b, timeout=30, trust_env=False).status_code == 200
        assert a.post("/ui/logout", data={"csrf": csrf.group(1)}).status_code == 303
        assert httpx.get(nodes[1] + "/admin/plugins", headers=on_b, timeout=30, trust_env=False).status_code == 401
