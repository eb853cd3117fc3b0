// A mailgate deployed on its own host name (not loopback), to meet the seed's "Application Type"
// FAQ as users do: a Desktop app client, which Google refuses with redirect_uri_mismatch.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  ALICE, DESKTOP_ID, DESKTOP_SECRET, freePort, launch, shooter, startGsim, startMailgate, stopAll,
} from "../harness.mjs";
import { createAdmin, createGmailServer, enterCredentials } from "../flows.mjs";

let gsim, mailgate, browser, base;

before(async () => {
  const port = await freePort();
  base = `http://mailgate.test:${port}`;
  gsim = await startGsim([]);
  mailgate = await startMailgate(gsim, port, base);
  // The browser reaches "mailgate.test" on this machine, as it would a real host.
  browser = await launch([`--host-resolver-rules=MAP mailgate.test 127.0.0.1`]);
});

after(async () => {
  await browser?.close();
  stopAll();
});

test("FAQ 'Application Type': a Desktop app client is explained before Google's error page", async () => {
  const shot = shooter("faq-desktop-client");
  const page = await browser.newPage();
  await createAdmin(page, shot, mailgate.setupLink);
  await enterCredentials(page, shot, DESKTOP_ID, DESKTOP_SECRET);
  await page.getByText("Google refuses redirect URIs on plain http except for localhost").waitFor();
  await createGmailServer(page, shot, "Gmail", ALICE, gsim.smtp_starttls);
  await page.getByRole("button", { name: "Connect your Gmail account" }).click();
  const problem = page.locator("#oauth-problem");
  await problem.waitFor();
  const text = await problem.textContent();
  assert.match(text, /redirect_uri_mismatch/);
  assert.match(text, /"Web application" \(not Desktop app\)/);
  assert.ok(text.includes(`add exactly: ${base}/google_gmail/confirm`));
  assert.ok(page.url().startsWith(base), "the browser never left mailgate");
  await shot(page, "mailgate-explains-desktop-client");
  await page.close();
});
