// End-to-end test of the console's login in headless Chromium, against a
// broker with a SASL listener and ACLs. console/browser_test.go's
// TestConsoleLoginInChromium seeds it and runs this script with:
//   CONSOLE_URL     the admin listener, e.g. http://127.0.0.1:9644
//   CHROMIUM        the browser binary (default /usr/bin/chromium)
//   SCREENSHOT_DIR  where screenshots are kept
//   SEED            JSON {aliceTopic, bobTopic, sharedTopic}: alice may
//                   describe alice's and the shared topic and edit the
//                   configs of hers; bob may describe bob's and the shared
//                   one. Passwords: the name + "-password".
// It exits non-zero at the first failed check, naming it.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const base = process.env.CONSOLE_URL;
const shots = process.env.SCREENSHOT_DIR ?? "e2e/screenshots";
const seed = JSON.parse(process.env.SEED ?? "{}");
if (!base || !seed.aliceTopic) {
  console.error("CONSOLE_URL and SEED must be set (run through go test ./console -run TestConsoleLoginInChromium)");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
const consoleErrors = [];
page.on("pageerror", (e) => consoleErrors.push(String(e)));
// The checks provoke 401s and 403s on purpose.
page.on("console", (m) => m.type() === "error" && !m.text().startsWith("Failed to load resource") && consoleErrors.push(m.text()));

let step = "start";
const check = async (name, fn) => {
  step = name;
  await fn();
  console.log(`ok  ${name}`);
};
const shot = (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
const expectText = async (sel, want) => {
  await page.locator(sel).filter({ hasText: want }).first().waitFor({ timeout: 10000 });
};
const fail = (msg) => {
  throw new Error(msg);
};
const login = async (user, password) => {
  await page.locator("[data-testid=login-form]").waitFor();
  await page.fill("input[name=username]", user);
  await page.fill("input[name=password]", password);
  await page.click("[data-testid=login-submit]");
};
const topicNames = async () => {
  await page.click("[data-testid=nav-topics]");
  await page.locator("[data-testid=topics] tbody tr").first().waitFor();
  return (await page.locator("[data-testid=topics] tbody tr td:first-child").allInnerTexts()).map((t) => t.trim()).sort();
};

try {
  await check("the console asks for a login", async () => {
    await page.goto(base + "/");
    await page.locator("[data-testid=login-form]").waitFor();
    const cookies = await page.context().cookies();
    if (cookies.length) fail(`cookies before login: ${JSON.stringify(cookies)}`);
    await shot("login");
  });

  await check("a wrong password is refused with the broker's error", async () => {
    await login("alice", "not-her-password");
    await expectText("[data-testid=login-error]", "login failed");
    await shot("login-failed");
  });

  await check("alice logs in: an HttpOnly, SameSite=Strict session cookie", async () => {
    await login("alice", "alice-password");
    await expectText("[data-testid=whoami]", "alice");
    const ck = (await page.context().cookies()).find((c) => c.name === "oncelog_console_session");
    if (!ck || !ck.httpOnly || ck.sameSite !== "Strict") fail(`session cookie ${JSON.stringify(ck)}`);
    if (await page.evaluate(() => document.cookie.includes("oncelog_console_session"))) fail("the page's script can read the session cookie");
  });

  await check("alice sees her topics and the shared one, not bob's", async () => {
    const names = await topicNames();
    if (names.join(",") !== [seed.aliceTopic, seed.sharedTopic].sort().join(",")) fail(`alice sees ${names}`);
    await shot("login-alice-topics");
  });

  const editRetention = async (topic, value) => {
    await page.click(`[data-testid=topics] a:text-is("${topic}")`);
    await page.click("[data-testid=tab-configs]");
    const row = page.locator("[data-testid=config-retention\\.ms]");
    await row.getByRole("button", { name: "Edit" }).click();
    await row.locator("input").fill(value);
    await row.getByRole("button", { name: "Save" }).click();
  };

  await check("alice edits a config of her topic", async () => {
    await editRetention(seed.aliceTopic, "7200000");
    await expectText("[data-testid=config-message]", "saved");
  });

  await check("alice may not edit the shared topic's config: the broker's error is shown", async () => {
    await page.click("[data-testid=nav-topics]");
    await editRetention(seed.sharedTopic, "7200000");
    await expectText("[data-testid=config-message]", "TOPIC_AUTHORIZATION_FAILED");
    await shot("login-alice-config-denied");
  });

  await check("logout ends the session", async () => {
    await page.click("[data-testid=logout]");
    await expectText("[data-testid=login-note]", "Logged out");
    const status = await page.evaluate(async () => (await fetch("/api/topics")).status);
    if (status !== 401) fail(`/api/topics after logout: ${status}, want 401`);
    await shot("login-logged-out");
  });

  await check("bob logs in and sees his topics and the shared one", async () => {
    await login("bob", "bob-password");
    await expectText("[data-testid=whoami]", "bob");
    const names = await topicNames();
    if (names.join(",") !== [seed.bobTopic, seed.sharedTopic].sort().join(",")) fail(`bob sees ${names}`);
    await shot("login-bob-topics");
  });

  if (consoleErrors.length) fail(`the page logged errors: ${consoleErrors.join("; ")}`);
  console.log("all login checks passed");
} catch (e) {
  await shot("login-failure").catch(() => {});
  console.error(`FAIL ${step}: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
