"""make demo-web: what a person does with it. Romeo logs in to the demo's
Converse through its login form and closes the browser; Juliet writes to
him; the pushes page, open in another browser, shows the push as it
arrives. Screenshots go to artifacts/ (not committed)."""

import sys

from harness import ROOT, Client, PUBLISH_OPTIONS, iq_type, run

sys.path.insert(0, str(ROOT / "tests"))
import demo  # noqa: E402

ARTIFACTS = ROOT / "artifacts"
# The page's row of the first push with a body (the important one: a closed
# browser's smacks queue may have been pushed, unimportant, before it).
ROW_WITH_BODY = ("Array.from(document.querySelectorAll('tr.push')).map(r => [r.className, r.innerText])"
                 ".find(([, text]) => text.includes('last-message-body'))")


async def open_pushes_page(browsers, web):
    page = await browsers().start()
    await page.goto(web.url + "pushes")
    await page.wait("document.getElementById('status').textContent === 'live'")
    return page


def test_web_demo_shows_a_push_from_converse_live(version, browsers):
    p = demo.web_prosody(version)
    p.start()
    web = demo.web_server(p).start()

    async def scenario():
        app = await demo.PrintingAppServer(p, web, quiet=True).start()
        page = await open_pushes_page(browsers, web)
        converse = await browsers().start()
        await converse.goto(web.url)
        await converse.fill("#converse-login-jid", "romeo@localhost")
        await converse.fill("#converse-login-password", "secret")
        await converse.click("#converse-login button[type=submit]")
        enabled = await converse.wait_ack("enable")
        await converse.wait_ack("enable", to=demo.MUC)  # it joined the lobby too
        ARTIFACTS.mkdir(exist_ok=True)
        await converse.screenshot(ARTIFACTS / f"demo-web-converse-{version}.png")
        converse.kill()  # the tab is closed
        j = await Client("juliet@localhost", p.c2s_port).start()
        j.send_message(mto="romeo@localhost", mbody="Wherefore art thou, Romeo?", mtype="chat")
        while not (push := await app.next_push(timeout=60)).important:
            pass
        row = await page.wait(ROW_WITH_BODY)
        await page.screenshot(ARTIFACTS / f"demo-web-{version}.png")
        await j.stop()
        await app.stop()
        return enabled, push, row

    try:
        enabled, push, (cls, text) = run(scenario(), timeout=300)
    finally:
        web.stop()
        p.cleanup()
    assert enabled["type"] == "result"
    assert push.node == demo.CONVERSE_PUSH["node"]
    assert cls == "push"  # no warning
    for shown in ("localhost", demo.CONVERSE_PUSH["node"], "message-count: 1",
                  "last-message-body: New Message!", "secret", "private"):
        assert shown in text, text
    assert demo.CONVERSE_PUSH["secret"] not in text  # the option's name, not its value
    assert "Wherefore" not in text


def test_web_demo_marks_a_push_with_body_and_sender(version, browsers):
    p = demo.web_prosody(version, with_body=True, with_sender=True)
    p.start()
    web = demo.web_server(p).start()

    async def scenario():
        app = await demo.PrintingAppServer(p, web, quiet=True).start()
        page = await open_pushes_page(browsers, web)
        r = await Client("romeo@localhost", p.c2s_port).start()
        assert iq_type(await r.enable("push.localhost", "romeo-phone",
                                      {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "t"})) == "result"
        await r.stop()
        j = await Client("juliet@localhost", p.c2s_port).start()
        j.send_message(mto="romeo@localhost", mbody="Wherefore art thou, Romeo?", mtype="chat")
        await app.next_push(timeout=60)
        row = await page.wait(ROW_WITH_BODY)
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(ARTIFACTS / f"demo-web-with-body-{version}.png")
        await j.stop()
        await app.stop()
        return row

    try:
        cls, text = run(scenario(), timeout=300)
    finally:
        web.stop()
        p.cleanup()
    assert cls == "push leak"
    assert "last-message-body: Wherefore art thou, Romeo?" in text
    assert "last-message-sender: juliet@localhost/phone" in text
    assert "⚠ body and sender sent" in text
