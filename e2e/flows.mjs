// The seed's steps, as an admin clicks them. Each step waits on what the page shows, never a timer.
import assert from "node:assert/strict";
import { ADMIN, PASSWORD } from "./harness.mjs";

export async function createAdmin(page, shot, setupLink) {
  await page.goto(setupLink);
  await page.getByRole("heading", { name: "Create the admin" }).waitFor();
  await shot(page, "setup-link");
  await page.getByLabel("Email").fill(ADMIN);
  await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
  await page.getByLabel("Confirm password").fill(PASSWORD);
  await page.getByRole("button", { name: "Create admin" }).click();
  await page.getByText("Admin created.").waitFor();
}

export async function enterCredentials(page, shot, clientId, clientSecret) {
  await page.goto(new URL("/settings", page.url()).href);
  const toggle = page.getByLabel(/Custom Email Servers/);
  await toggle.check();
  await page.getByRole("group", { name: "Gmail Credentials" }).waitFor();
  await page.getByLabel("Client ID").fill(clientId);
  await page.getByLabel("Client Secret").fill(clientSecret);
  await shot(page, "settings-filled");
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByText("Settings saved.").waitFor();
  assert.equal(await page.getByLabel("Client Secret").inputValue(), "", "the secret is never sent back");
  assert.ok(!(await page.content()).includes(clientSecret));
  await shot(page, "settings-saved");
}

/** Creates a Gmail server and returns its page URL. */
export async function createGmailServer(page, shot, name, username, smtp) {
  await page.getByRole("link", { name: "Outgoing Mail Servers" }).first().click();
  await page.getByRole("heading", { name: "Outgoing Mail Servers" }).waitFor();
  await page.getByRole("link", { name: "New" }).click();
  await page.getByRole("heading", { name: "New outgoing mail server" }).waitFor();
  assert.equal(await page.getByLabel("Gmail OAuth").isChecked(), true);
  // A Gmail OAuth server never offers the host: the token goes to the configured Gmail endpoint.
  assert.equal(await page.getByLabel("SMTP host").isVisible(), false, "Gmail hides the host");
  await page.locator("#gmail-endpoint", { hasText: `connect to ${smtp}` }).waitFor();
  await page.getByLabel("Username and password").check();
  await page.getByLabel("SMTP host").waitFor({ state: "visible" });
  await page.getByLabel("Gmail OAuth").check();
  await page.getByLabel("SMTP host").waitFor({ state: "hidden" });
  await shot(page, "new-server");
  await page.getByLabel("Description").fill(name);
  await page.getByLabel("Username", { exact: true }).fill(username);
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByText("Server saved.").waitFor();
  await page.locator("#token-badge", { hasText: "Not connected" }).waitFor();
  await shot(page, "server-saved-not-connected");
  return page.url().split("#")[0];
}

/** At gsim's pages: pick the account, get past the Testing warning, allow. */
export async function consentAtGoogle(page, shot, email) {
  await page.getByRole("heading", { name: "Choose an account" }).waitFor();
  const first = page.locator("button[data-email]").first();
  assert.equal(await first.getAttribute("data-email"), email, "login_hint puts the account first");
  await shot(page, "google-choose-account");
  await page.locator(`button[data-email="${email}"]`).click();
  await page.getByRole("heading", { name: "Google hasn't verified this app" }).waitFor();
  await shot(page, "google-unverified-app");
  await page.getByRole("button", { name: "Continue" }).click();
  await page.getByRole("heading", { name: /wants access to your Google Account/ }).waitFor();
  assert.ok(await page.getByText("Read, compose, send, and permanently delete all your email from Gmail").isVisible());
  await shot(page, "google-consent");
  await page.getByRole("button", { name: "Continue" }).click();
}
