"""The memory browser (/ui) end to end: a real ``engram serve`` (tests/servers.py) with two
tenants' API keys, a fixture conversation loaded through the REST API, and Debian's headless
chromium (tests/ui_browser.py) driving every page: users and their timeline, search, a hit
followed to its record and its session, an edit and its history, an error shown as the server's
message, delete and forget behind confirmations, another tenant's key seeing nothing, the stats
page, accessibility basics and a narrow screen. Screenshots of every page are saved
(ENGRAM_UI_SCREENSHOTS, default tests/artifacts/ui/; ENGRAM_UI_DOCS=1 refreshes docs/ui/)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from engram import HashEmbedder, Memory, MemoryRecord, RecordKind, SqliteStore, ui
from engram.ui import CONTENT_SECURITY_POLICY, FILES
from servers import ServerProcess, rest_server, run_engram
from ui_browser import Browser, browser_session

TENANT_A, TENANT_B = "acme", "globex"
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script> & <b>bold</b>'
CONVERSATION = {  # session id: (date, [(role, name, text)])
    "trip-2024-03": ("2024-03-02T10:00:00Z", [
        ("user", "Alice", "We are planning a trip to Lisbon in June."),
        ("assistant", None, "Lisbon in June is lovely. Do you want hotel ideas near Alfama?"),
        ("user", "Alice", "Yes, and my sister Joana is coming too."),
        ("assistant", None, "Great, I will look for rooms for two near the river."),
    ]),
    "pets-2024-05": ("2024-05-08T13:56:00Z", [
        ("user", "Alice", "We adopted a beagle called Rex! He loves long walks."),
        ("assistant", None, "Congratulations! Beagles need plenty of exercise."),
        ("user", "Alice", f"Rex chewed my notes: {XSS}"),
    ]),
    "move-2024-06": ("2024-06-20T08:30:00Z", [
        ("user", "Alice", "We moved to Porto last week, the new flat has a garden for Rex."),
        ("assistant", None, "A garden in Porto sounds perfect for a beagle."),
    ]),
}  # fmt: skip


def keys_create(env: dict[str, str], path: Path, tenant: str) -> str:
    done = run_engram("keys", "create", "--tenant", tenant, "--keys", str(path), env=env)
    assert done.returncode == 0, done.stderr
    key: str = json.loads(done.stdout)["key"]
    return key


def load(http: httpx.Client, user: str) -> dict[str, list[dict]]:
    """The fixture conversation for ``user`` through POST /v1/messages; its turns by session."""
    turns = {}
    for session, (date, messages) in CONVERSATION.items():
        body = {
            "user_id": user, "session_id": session, "session_date": date, "agent_id": "travel-bot",
            "messages": [
                {"role": role, "content": text, **({"name": name} if name else {}),
                 "id": f"{session}-m{i}", "metadata": {"source": "fixture", "n": i},
                 "timestamp": f"{date[:14]}{i:02d}:00Z"}
                for i, (role, name, text) in enumerate(messages)
            ],
        }  # fmt: skip
        response = http.post("/v1/messages", json=body)
        assert response.status_code == 201, response.text
        turns[session] = response.json()["records"]
    return turns


@dataclass
class Site:
    server: ServerProcess
    keys: dict[str, str]
    turns: dict[str, list[dict]]  # tenant A's alice, by session

    def http(self, tenant: str = TENANT_A) -> httpx.Client:
        return self.server.client(self.keys[tenant])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]) -> Iterator[Site]:
    db = tmp_path_factory.mktemp("ui") / "engram.db"
    keys_path = Path(f"{db}.keys")
    keys = {t: keys_create(server_env, keys_path, t) for t in (TENANT_A, TENANT_B)}
    with rest_server(db, env=server_env) as server:
        with server.client(keys[TENANT_A]) as http:
            turns = load(http, "alice")
            load(http, "bob")
        with server.client(keys[TENANT_B]) as http:  # another tenant's user, never shown to A
            answer = http.post("/v1/messages", json={"user_id": "carol", "messages": [
                {"role": "user", "content": "a user of the other tenant"}]})  # fmt: skip
            assert answer.status_code == 201, answer.text
        yield Site(server, keys, turns)


@pytest.fixture(scope="module")
def browser(site: Site) -> Iterator[Browser]:
    with browser_session(site.server.url) as running:
        running.open("#/users")
        running.set_key(site.keys[TENANT_A])
        yield running
        assert not [m for m in running.console() if "Content Security Policy" in m]


# -- the pages ----------------------------------------------------------------------------------


def test_users_and_timeline(browser: Browser) -> None:
    browser.open("#/users")
    browser.wait_text("#key-state", "A key is in use")
    browser.fill("#user-id", "alice")
    browser.find("#user-id").send_keys(Keys.ENTER)
    browser.settled()
    assert browser.driver.current_url.endswith("#/user/alice")
    sessions = browser.all("#timeline .session")
    assert [s.get_attribute("data-session") for s in sessions] == list(CONVERSATION)  # by date
    assert [s.find_element(By.CSS_SELECTOR, ".count").text for s in sessions] == [
        "4 turns", "3 turns", "2 turns",
    ]  # fmt: skip
    assert "2024-03-02" in browser.text("#timeline")
    browser.shot("timeline", doc=True)
    browser.open("#/users")
    assert user_list(browser) == ["alice", "bob"]  # the tenant's users, not the other's carol
    assert not browser.find("#more-users").is_displayed()
    browser.shot("users", doc=True)
    browser.open("#/users?limit=1")  # a page at a time
    assert user_list(browser) == ["alice"]
    browser.click("#more-users")
    browser.settled()
    assert user_list(browser) == ["alice", "bob"]
    assert not browser.find("#more-users").is_displayed()
    browser.click("#user-list a[href='#/user/bob']")
    browser.settled()
    assert browser.driver.current_url.endswith("#/user/bob")


def user_list(browser: Browser) -> list[str]:
    browser.settled()
    return [a.text for a in browser.all("#user-list li a")]


def test_search_explains_hits_and_opens_them(browser: Browser, site: Site) -> None:
    browser.open("#/search")
    browser.fill("#s-user", "alice")
    browser.fill("#s-query", "where does the beagle walk?")
    browser.click("#s-config option[value=lexical]")
    browser.fill("#s-date", "06/30/2024")  # chromium's date field takes the locale's order
    browser.click("#search-form button[type=submit]")
    browser.settled()
    hits = browser.all("#hits .hit")
    assert hits, browser.text()
    first = hits[0]
    assert "beagle" in first.text.lower()
    marks = [m.text.lower() for m in browser.all("#hits mark")]
    assert "beagle" in marks and "walks" in marks, marks  # the query's words, highlighted
    assert "config=lexical" in browser.driver.current_url
    assert "date=2024-06-30" in browser.driver.current_url
    first.find_element(By.CSS_SELECTOR, "summary").click()
    explained = first.find_element(By.CSS_SELECTOR, "table").text
    assert "lexical" in explained and "rank" in explained, explained
    assert first.find_elements(By.CSS_SELECTOR, ".keys a")  # matched keys, as links
    browser.shot("search", doc=True)

    hit_id = first.get_attribute("data-id")
    first.find_element(By.CSS_SELECTOR, "a.open-hit").click()  # to the turn in its session
    browser.settled()
    focused = browser.find(".turn.focused")
    assert focused.get_attribute("data-id") == hit_id
    assert browser.driver.switch_to.active_element == focused
    session = browser.text("h1").removeprefix("Session ")
    assert [t.get_attribute("data-id") for t in browser.all("#turns .turn")] == [
        t["id"] for t in site.turns[session]
    ]  # every turn, in order
    browser.shot("session", doc=True)


def test_search_scope_and_no_hits(browser: Browser) -> None:
    browser.open("#/search?user=alice&q=Lisbon&config=lexical&session=move-2024-06")
    assert browser.find("#s-session").get_attribute("value") == "move-2024-06"
    browser.find("#no-hits")  # Lisbon is only said in another session
    browser.open("#/search?user=alice&q=Lisbon&config=hybrid")
    assert {h.get_attribute("data-id") for h in browser.all("#hits .hit")}


def test_record_view_edit_history_and_error(browser: Browser, site: Site) -> None:
    turn = site.turns["trip-2024-03"][2]  # "Yes, and my sister Joana is coming too."
    browser.open(f"#/record/alice/{turn['id']}")
    page = browser.text("main")
    for shown in ("Alice", "user", "trip-2024-03", "travel-bot", "2024-03-02 10:02 UTC",
                  "Said at", "Recorded at", '"source": "fixture"', "History", "ADD"):  # fmt: skip
        assert shown in page, (shown, page)
    keys = browser.all("#keys li")
    kinds = {k.find_element(By.CSS_SELECTOR, ".kind").text.lower() for k in keys}
    assert {"round", "window"} <= kinds, kinds  # the keys built from it

    browser.fill("#edit-text", "")  # the server refuses an empty text: its message is shown
    browser.click("#save")
    browser.confirm(ok=True)
    with site.http() as http:
        refused = http.patch(f"/v1/records/{turn['id']}", json={"user_id": "alice", "text": ""})
    assert refused.status_code == 422
    assert refused.json()["error"]["message"] in browser.alert()
    browser.shot("error")

    browser.fill("#edit-text", "Yes, and my brother Tiago is coming too.")
    browser.click("#save")
    browser.confirm(ok=False)  # cancelled: nothing sent
    with site.http() as http:
        assert (
            http.get(f"/v1/records/{turn['id']}", params={"user_id": "alice"}).json()["text"]
            == turn["text"]
        )
    browser.click("#save")
    browser.confirm(ok=True)
    browser.wait_text("#notice", "Saved.")
    assert browser.text("#record-text") == "Yes, and my brother Tiago is coming too."
    history = browser.text("#history")
    assert "UPDATE" in history and "Joana" in history and "Tiago" in history, history
    assert not browser.find("#alert").is_displayed()
    browser.shot("record-history", doc=True)
    browser.shot("record", doc=True, top=True)


def test_delete_with_confirmation(browser: Browser, site: Site) -> None:
    turn = site.turns["move-2024-06"][1]
    browser.open(f"#/record/alice/{turn['id']}")
    browser.click("#delete")
    browser.shot("confirm", doc=True)
    browser.confirm(ok=False)
    with site.http() as http:
        assert http.get(f"/v1/records/{turn['id']}", params={"user_id": "alice"}).status_code == 200
    browser.click("#delete")
    browser.confirm(ok=True)
    browser.wait_text("#notice", "Deleted")
    assert turn["id"] in browser.text("#deleted")
    with site.http() as http:
        assert http.get(f"/v1/records/{turn['id']}", params={"user_id": "alice"}).status_code == 404
    browser.click("main a[href='#/session/alice/move-2024-06']")
    browser.settled()
    assert len(browser.all("#turns .turn")) == 1


def test_forget_session_and_user(browser: Browser, site: Site) -> None:
    browser.open("#/session/bob/pets-2024-05")
    assert len(browser.all("#turns .turn")) == 3
    browser.click("#forget-session")
    browser.confirm(ok=True)
    browser.wait_text("#notice", "Forgot")
    assert not browser.all("#turns .turn")
    browser.open("#/user/bob")
    assert len(browser.all("#timeline .session")) == 2
    browser.click("#forget-user")
    browser.confirm(ok=False)
    assert len(browser.all("#timeline .session")) == 2
    browser.click("#forget-user")
    browser.confirm(ok=True)
    browser.wait_text("#notice", "Forgot")
    browser.find("#no-sessions")
    with site.http() as http:
        assert http.get("/v1/sessions", params={"user_id": "bob"}).json() == {"sessions": []}


def test_stored_markup_is_shown_as_text(browser: Browser, site: Site) -> None:
    turn = site.turns["pets-2024-05"][2]
    browser.open(f"#/session/alice/pets-2024-05/{turn['id']}")
    assert XSS in browser.text(".turn.focused .text")
    browser.open(f"#/search?user=alice&q={'chewed notes img script'}")
    browser.find("#hits")
    browser.open(f"#/record/alice/{turn['id']}")
    assert XSS in browser.text("#record-text")
    assert not browser.all("main img, main script, main b")
    assert browser.driver.execute_script("return window.__xss") is None


def test_stats_page(browser: Browser) -> None:
    browser.open("#/stats/alice")
    page = browser.text("main")
    assert "Records per kind" in page and "turn" in page and "hash-256" in page, page
    assert "not shown with an API key" in page
    bars = browser.all("#chart rect.bar")
    assert len(bars) == 3  # three session dates
    label = browser.find("#chart svg").get_attribute("aria-label")
    assert "2024-03 4" in label, label  # by month: the dates span over two months
    browser.driver.execute_script("document.getElementById('chart-title').scrollIntoView()")
    browser.shot("stats", doc=True)


def test_another_tenants_key_sees_nothing(browser: Browser, site: Site) -> None:
    turn = site.turns["trip-2024-03"][0]
    browser.open("#/users")
    assert "alice" in user_list(browser)
    browser.set_key(site.keys[TENANT_B])
    try:
        assert user_list(browser) == ["carol"]  # its own users only
        browser.open("#/user/alice")
        browser.find("#no-sessions")
        browser.open("#/search?user=alice&q=Lisbon beagle Porto")
        browser.find("#no-hits")
        browser.open(f"#/record/alice/{turn['id']}")
        assert "NotFoundError" in browser.alert()
        assert turn["text"] not in browser.text("body")
        browser.open(f"#/session/alice/{turn['session_id']}")
        assert not browser.all("#turns .turn")
        browser.open("#/stats/alice")
        assert "hash-256" not in browser.text("main") or "Users\n0" in browser.text("main")
        browser.shot("other-tenant")
    finally:
        browser.set_key(site.keys[TENANT_A])


def test_accessibility_basics(browser: Browser) -> None:
    for route in ("#/users", "#/search?user=alice&q=beagle", "#/stats/alice", "#/user/alice"):
        browser.open(route)
        assert browser.driver.execute_script("return document.documentElement.lang") == "en"
        for landmark in ("header", "nav", "main", "footer"):
            assert browser.all(landmark), (route, landmark)
        unlabelled = browser.driver.execute_script(
            "return [...document.querySelectorAll('input, select, textarea')]"
            ".filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))"
            ".map(e => e.id || e.name)"
        )
        assert unlabelled == [], (route, unlabelled)
    browser.open("#/user/alice")
    browser.driver.execute_script("document.activeElement.blur()")
    reached = set()
    for _ in range(40):  # Tab through the page: every control gets the focus in turn
        ActionChains(browser.driver).send_keys(Keys.TAB).perform()
        active = browser.driver.switch_to.active_element
        reached.add(active.get_attribute("id") or active.text)
    controls = (
        "api-key",
        "key-clear",
        "forget-user",
        "Users",
        "Search",
        "Stats",
        "Search this user",
    )
    assert set(controls) <= reached, reached
    browser.find("#forget-user").send_keys(Keys.ENTER)  # the dialog opens by keyboard
    browser.wait(lambda d: d.execute_script("return document.getElementById('confirm').open"),
                 "the dialog")  # fmt: skip
    assert browser.driver.switch_to.active_element.get_attribute("id") == "confirm-cancel"
    browser.driver.switch_to.active_element.send_keys(Keys.ESCAPE)  # Escape cancels
    browser.wait(lambda d: not d.execute_script("return document.getElementById('confirm').open"),
                 "the dialog to close")  # fmt: skip
    assert browser.all("#timeline .session")


def test_narrow_screen(site: Site) -> None:
    with browser_session(site.server.url, width=500, height=844) as narrow:
        narrow.emulate(390, 844)
        narrow.open("#/users")
        narrow.set_key(site.keys[TENANT_A])
        for route, name in (("#/session/alice/trip-2024-03", "narrow-session"),
                            ("#/search?user=alice&q=Porto garden", "narrow-search")):  # fmt: skip
            narrow.open(route)
            width = narrow.driver.execute_script(
                "return [document.documentElement.scrollWidth, window.innerWidth]"
            )
            assert width[0] <= width[1] == 390, (route, width)  # nothing sticks out sideways
            narrow.shot(name, doc=True)


# -- keyless mode, and a fact ---------------------------------------------------------------------


def write_fact(db: Path) -> tuple[dict[str, str], str]:
    """A conversation and a fact derived from two of its turns (as the LLM layer will store
    them), written with an embedded Memory before the server starts; the turn ids, the fact id."""
    with Memory(store=SqliteStore(db), embedder=HashEmbedder()) as mem:
        turns = mem.add(
            [{"role": "user", "content": "I live in Lisbon.", "id": "m1"},
             {"role": "user", "content": "We moved to Porto!", "id": "m2"}],
            user_id="carol", session_id="s1", session_date="2024-06-01T09:00:00Z",
        )  # fmt: skip
        fact = MemoryRecord(
            id="fact-carol-city", kind=RecordKind.FACT, text="Carol lives in Porto.",
            user_id="carol", session_id="s1", agent_id=None, role=None, name=None, seq=None,
            timestamp=turns[1].timestamp, created_at=datetime.now(UTC),
            provenance=(turns[1].id,), valid_from=datetime(2024, 6, 1, 9, tzinfo=UTC),
            valid_to=None, metadata={"confidence": 0.9},
        )  # fmt: skip
        mem.store.add([fact], mem.embedder.embed_batch([fact.text]))
    return {t.message_ids[0]: t.id for t in turns}, fact.id


def test_keyless_mode_and_a_fact(tmp_path: Path, server_env: dict[str, str]) -> None:
    db = tmp_path / "open.db"
    turns, fact = write_fact(db)
    with rest_server(db, env=server_env) as server, browser_session(server.url) as browser:
        browser.open("#/users")
        browser.wait_text("#key-state", "No key")
        assert user_list(browser) == ["carol"]  # keyless: every user of the store
        browser.open("#/user/carol")
        sessions = browser.all("#timeline .session")
        assert [s.get_attribute("data-session") for s in sessions] == ["s1"]
        browser.open(f"#/record/carol/{fact}")
        page = browser.text("main")
        assert "Record (fact)" in page and "Carol lives in Porto." in page, page
        assert "2024-06-01 09:00 UTC \u2013 still valid" in browser.text(".validity")
        assert [li.get_attribute("data-id") for li in browser.all("#sources li")] == [turns["m2"]]
        assert '"confidence": 0.9' in browser.text("#metadata")
        browser.shot("fact", doc=True, top=True)
        browser.click(f"#sources a[href='#/record/carol/{turns['m2']}']")
        browser.settled()
        assert [li.get_attribute("data-id") for li in browser.all("#keys li")].count(fact) == 1
        browser.open("#/stats")
        page = browser.text("main")
        assert "Whole store (keyless mode)" in page and "KiB" in page, page  # the file's size


# -- the files ----------------------------------------------------------------------------------


def test_ui_files_and_headers(site: Site) -> None:
    with site.server.client() as http:  # no key: the page itself is public, its data is not
        moved = http.get("/ui")
        assert moved.status_code == 308 and moved.headers["location"] == "ui/"
        for name in ("", *FILES):
            response = http.get(f"/ui/{name}")
            assert response.status_code == 200, name
            assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["content-type"] == FILES.get(name, FILES["index.html"])
            text = response.text
            assert "innerHTML" not in text and "outerHTML" not in text, name
            assert "insertAdjacentHTML" not in text and "document.write" not in text, name
            outside = re.findall(r"https?://[^\s\"'`)]+", text)
            assert set(outside) <= {"http://www.w3.org/2000/svg"}, (name, outside)
        missing = http.get("/ui/secret.py")
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "NoSuchRoute"
        assert http.get("/v1/stats", params={"user_id": "alice"}).status_code == 401
        assert "/ui/" not in http.get("/openapi.json").text
    assert "default-src 'self'" in CONTENT_SECURITY_POLICY
    shipped = {p.name for p in (Path(ui.__file__).parent / "static").iterdir()}
    assert shipped == set(FILES) | {"index.html"}


def test_sessions_route_is_tenant_scoped(site: Site) -> None:
    """GET /v1/sessions (the timeline's route) with another tenant's key: none of the first
    tenant's sessions, even for the same user id, and its own stay apart."""
    with site.http(TENANT_A) as a, site.http(TENANT_B) as b:
        mine = a.get("/v1/sessions", params={"user_id": "alice"}).json()["sessions"]
        assert {s["session_id"] for s in mine} == set(CONVERSATION)
        assert b.get("/v1/sessions", params={"user_id": "alice"}).json() == {"sessions": []}
        added = b.post("/v1/messages", json={
            "user_id": "alice", "session_id": "globex-only", "messages": [
                {"role": "user", "content": "another tenant's alice"}],
        })  # fmt: skip
        assert added.status_code == 201, added.text
        theirs = b.get("/v1/sessions", params={"user_id": "alice"}).json()["sessions"]
        assert [s["session_id"] for s in theirs] == ["globex-only"]
        assert a.get("/v1/sessions", params={"user_id": "alice"}).json()["sessions"] == mine
        assert b.post("/v1/forget", json={"user_id": "alice"}).json() == {"forgotten": 1}
