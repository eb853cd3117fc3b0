// Starts gsim and mailgate as the README does, and a headless Chromium to drive them.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const target = process.env.CARGO_TARGET_DIR || "/var/tmp/mailgate-target";
export const MAILGATE_BIN = process.env.MAILGATE_BIN || join(target, "debug", "mailgate");
export const GSIM_BIN = process.env.GSIM_BIN || join(target, "debug", "gsim");
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

export const CLIENT_ID = "555000000001-e2ewebclient00000000000000000.apps.googleusercontent.com";
export const CLIENT_SECRET = "GOCSPX-e2e-web-client-secret";
export const DESKTOP_ID = "555000000002-e2edesktopclient000000000000.apps.googleusercontent.com";
export const DESKTOP_SECRET = "GOCSPX-e2e-desktop-client-secret";
export const ALICE = "alice@gmail.com";
export const BOB = "bob@example.com";
export const CAROL = "carol@gmail.com";
export const ADMIN = "admin@example.com";
export const PASSWORD = "a long and careful passphrase";

const children = [];

export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Runs a program and resolves with the first stdout line that `match` accepts. */
function start(bin, args, env, match, label) {
  const child = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  const logs = [];
  child.stderr.on("data", (d) => logs.push(d.toString()));
  const lines = createInterface({ input: child.stdout });
  return new Promise((resolve, reject) => {
    child.on("exit", (code) => reject(new Error(`${label} exited (${code}) before it was ready:\n${logs.join("")}`)));
    lines.on("line", (line) => {
      const found = match(line);
      if (found) resolve({ child, value: found, logs });
    });
  });
}

/** gsim with one web client in Testing (Alice and Carol are its test users), Alice, Bob and Carol. */
export async function startGsim(redirectUris) {
  const dir = mkdtempSync(join(tmpdir(), "e2e-gsim-"));
  const config = join(dir, "gsim.toml");
  writeFileSync(config, `
[[clients]]
client_id = "${CLIENT_ID}"
client_secret = "${CLIENT_SECRET}"
type = "web"
name = "mailgate"
redirect_uris = [${redirectUris.map((u) => JSON.stringify(u)).join(", ")}]
publishing_status = "testing"
test_users = ["${ALICE}", "${CAROL}"]

[[clients]]
client_id = "${DESKTOP_ID}"
client_secret = "${DESKTOP_SECRET}"
type = "desktop"
name = "mailgate (desktop client)"
publishing_status = "production"

[[accounts]]
email = "${ALICE}"
name = "Alice Example"

[[accounts]]
email = "${BOB}"
name = "Bob Example"

[[accounts]]
email = "${CAROL}"
name = "Carol Example"
`);
  const { value } = await start(GSIM_BIN, ["serve", "--config", config, "--state-dir", dir], {}, (line) => {
    try { return JSON.parse(line); } catch { return null; }
  }, "gsim");
  return { ...value, dir };
}

/** mailgate serve on `port`, reachable at `publicUrl`, talking to `gsim`. Resolves with the setup link. */
export async function startMailgate(gsim, port, publicUrl) {
  const dir = mkdtempSync(join(tmpdir(), "e2e-mailgate-"));
  const env = {
    MAILGATE_DATA_DIR: dir,
    MAILGATE_HTTP_ADDR: `127.0.0.1:${port}`,
    MAILGATE_RELAY_ADDR: "127.0.0.1:0",
    MAILGATE_PUBLIC_URL: publicUrl,
    MAILGATE_GOOGLE_AUTH_URL: `${gsim.http}/o/oauth2/v2/auth`,
    MAILGATE_GOOGLE_TOKEN_URL: `${gsim.http}/token`,
    MAILGATE_GOOGLE_REVOKE_URL: `${gsim.http}/revoke`,
    MAILGATE_GOOGLE_CERTS_URL: `${gsim.http}/oauth2/v3/certs`,
    MAILGATE_GMAIL_SMTP: gsim.smtp_starttls,
    MAILGATE_GMAIL_IMAP: gsim.imap_tls,
    MAILGATE_EXTRA_CA_FILE: gsim.ca_cert,
  };
  const { value } = await start(MAILGATE_BIN, ["serve"], env, (line) => {
    const m = line.match(/(https?:\/\/\S+\/setup\?token=\S+)/);
    return m ? m[1] : null;
  }, "mailgate");
  return { setupLink: value, dir, publicUrl };
}

export async function launch(extraArgs = []) {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      ...extraArgs,
    ],
  });
}

/** A screenshot of every page the suite asserts on, kept in e2e/artifacts/<suite>/. */
export function shooter(suite) {
  const dir = join(here, "artifacts", suite);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  let n = 0;
  return async (page, name) => {
    n += 1;
    await page.screenshot({ path: join(dir, `${String(n).padStart(2, "0")}-${name}.png`), fullPage: true });
  };
}

export async function gsimControl(gsim, method, path, body) {
  const response = await fetch(`${gsim.http}${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return response.json();
}

export function stopAll() {
  for (const child of children.splice(0)) child.kill("SIGTERM");
}
