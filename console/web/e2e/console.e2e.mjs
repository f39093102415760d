// End-to-end test of the web console in headless Chromium (Debian's
// chromium driven by playwright-core; no browser download). The Go test
// console/browser_test.go starts a real broker, seeds it and runs this
// script with:
//   CONSOLE_URL     the admin listener, e.g. http://127.0.0.1:9644
//   CHROMIUM        the browser binary (default /usr/bin/chromium)
//   SCREENSHOT_DIR  where a screenshot of every page is kept
//   SEED            JSON of what was seeded: {topic, group, keyTopic, key, committedValue, abortedValue}
// It exits non-zero at the first failed check, naming it.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const base = process.env.CONSOLE_URL;
const shots = process.env.SCREENSHOT_DIR ?? "e2e/screenshots";
const seed = JSON.parse(process.env.SEED ?? "{}");
if (!base || !seed.topic) {
  console.error("CONSOLE_URL and SEED must be set (run through go test ./console -run TestConsoleInChromium)");
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
// The checks provoke 400s and 404s on purpose (a bad config value, a key
// not in the window); the browser logs each failed fetch, which is no bug.
page.on("console", (m) => m.type() === "error" && !m.text().startsWith("Failed to load resource") && consoleErrors.push(m.text()));

let step = "start";
const check = async (name, fn) => {
  step = name;
  await fn();
  console.log(`ok  ${name}`);
};
const shot = (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
const text = (sel) => page.locator(sel).innerText();
const expectText = async (sel, want) => {
  await page.locator(sel).filter({ hasText: want }).first().waitFor({ timeout: 10000 });
};
const fail = (msg) => {
  throw new Error(msg);
};

try {
  await check("overview shows the cluster, its broker and listener", async () => {
    await page.goto(base + "/");
    await expectText("[data-testid=brokers]", "127.0.0.1");
    await expectText("[data-testid=listeners]", "PLAINTEXT");
    const topics = Number((await text("[data-testid=stat-topics] .stat-value")).replace(/,/g, ""));
    if (topics < 2) fail(`overview counts ${topics} topics, want at least 2`);
    await shot("overview");
  });

  await check("topics page lists the seeded topic", async () => {
    await page.click("[data-testid=nav-topics]");
    await expectText("[data-testid=topics]", seed.topic);
    await shot("topics");
  });

  await check("a topic's partitions show start, LEO, HW and LSO", async () => {
    await page.click(`[data-testid=topics] a:text-is("${seed.topic}")`);
    await page.locator("[data-testid=partitions] tbody tr").nth(2).waitFor();
    const rows = await page.locator("[data-testid=partitions] tbody tr").count();
    if (rows !== 3) fail(`${rows} partition rows, want 3`);
    await shot("topic-partitions");
  });

  await check("a topic config is edited and saved", async () => {
    await page.click("[data-testid=tab-configs]");
    const row = page.locator("[data-testid=config-retention\\.ms]");
    await row.getByRole("button", { name: "Edit" }).click();
    await row.locator("input").fill("86400000");
    await row.getByRole("button", { name: "Save" }).click();
    await expectText("[data-testid=config-message]", "saved");
    await expectText("[data-testid=config-retention\\.ms]", "86400000");
    await expectText("[data-testid=config-retention\\.ms]", "DYNAMIC_TOPIC_CONFIG");
    await shot("topic-configs");
  });

  await check("a bad config value is refused with the broker's reason", async () => {
    const row = page.locator("[data-testid=config-retention\\.ms]");
    await row.getByRole("button", { name: "Edit" }).click();
    await row.locator("input").fill("not-a-number");
    await row.getByRole("button", { name: "Save" }).click();
    await page.locator("[data-testid=config-message].error").waitFor();
    await row.getByRole("button", { name: "Cancel" }).click();
  });

  await check("the record browser shows aborted data read_uncommitted, hides it read_committed", async () => {
    await page.click("[data-testid=tab-records]");
    await page.selectOption("[data-testid=browse-partition]", String(seed.partition));
    await page.click("[data-testid=browse-load]");
    await expectText("[data-testid=records]", seed.committedValue);
    await expectText("[data-testid=records]", seed.abortedValue);
    await expectText("[data-testid=records]", "src=console-test");
    await shot("records-uncommitted");
    await page.check("[data-testid=browse-committed]");
    await page.click("[data-testid=browse-load]");
    await expectText("[data-testid=browse-summary]", "read_committed");
    await expectText("[data-testid=records]", seed.committedValue);
    const all = await text("[data-testid=records]");
    if (all.includes(seed.abortedValue)) fail("read_committed shows a record of an aborted transaction");
    await shot("records-committed");
  });

  await check("the record browser starts at an offset", async () => {
    await page.uncheck("[data-testid=browse-committed]");
    await page.fill("[data-testid=browse-from]", "1");
    await page.click("[data-testid=browse-load]");
    await expectText("[data-testid=browse-summary]", "from offset 1");
    const first = await page.locator("[data-testid=records] tbody tr td").first().innerText();
    if (first !== "1") fail(`first record shown is at offset ${first}, want 1`);
  });

  await check("producers of the topic with epochs and sequences", async () => {
    await page.click("[data-testid=tab-producers]");
    await page.locator("[data-testid=producers] tbody tr").first().waitFor();
    await expectText("[data-testid=duplicates-dropped]", "retried batches");
    // The retried batch counts on its own partition: 1 batch of 2 records.
    const dupRow = page.locator("[data-testid=partition-duplicates] tbody tr").nth(seed.retriedPartition);
    await dupRow.waitFor();
    const cells = await dupRow.locator("td").allInnerTexts();
    if (cells[0] !== String(seed.retriedPartition) || cells[1] !== "1" || cells[2] !== "2") {
      fail(`duplicates of partition ${seed.retriedPartition}: ${cells.join(" | ")}, want 1 retried batch of 2 records`);
    }
    await shot("topic-producers");
  });

  await check("transactions: the committed and aborted counts and the transactional id", async () => {
    await page.click("[data-testid=nav-transactions]");
    await expectText("[data-testid=txns]", seed.transactionalId);
    const committed = Number((await text("[data-testid=stat-committed] .stat-value")).replace(/,/g, ""));
    const aborted = Number((await text("[data-testid=stat-aborted] .stat-value")).replace(/,/g, ""));
    if (committed < 1 || aborted < 1) fail(`committed ${committed}, aborted ${aborted}: want at least 1 of each`);
    await shot("transactions");
  });

  await check("consumer groups with members and lag", async () => {
    await page.click("[data-testid=nav-groups]");
    await expectText("[data-testid=groups]", seed.group);
    await page.click(`[data-testid=groups] a:text-is("${seed.group}")`);
    await expectText("[data-testid=offsets]", seed.topic);
    await shot("group");
  });

  await check("a KIP-848 consumer group: type, member epoch and assignment, lag", async () => {
    await page.click("[data-testid=nav-groups]");
    await expectText("[data-testid=groups]", seed.group848);
    const row = page.locator(`[data-testid=groups] tr:has(a:text-is("${seed.group848}"))`);
    const cells = await row.locator("td").allInnerTexts();
    if (cells[1] !== "consumer") fail(`group ${seed.group848} listed with type ${cells[1]}, want consumer`);
    await page.click(`[data-testid=groups] a:text-is("${seed.group848}")`);
    await expectText("[data-testid=group-summary]", "consumer group");
    await expectText("[data-testid=members]", `${seed.topic848}/0`);
    await expectText("[data-testid=offsets]", `${seed.topic848}/0`);
    await shot("group-kip848");
  });

  await check("a share group: type, members and share-partition offsets", async () => {
    await page.click("[data-testid=nav-groups]");
    await expectText("[data-testid=groups]", seed.shareGroup);
    await page.click(`[data-testid=groups] a:text-is("${seed.shareGroup}")`);
    await expectText("[data-testid=group-summary]", "share group");
    await expectText("[data-testid=members]", seed.topic848);
    await expectText("[data-testid=share-offsets]", `${seed.topic848}/0`);
    await shot("group-share");
  });

  await check("key window: a key written through HTTP ingest is found", async () => {
    await page.click("[data-testid=nav-keys]");
    await page.fill("[data-testid=key-topic]", seed.keyTopic);
    await page.fill("[data-testid=key-key]", seed.key);
    await page.click("[data-testid=key-lookup]");
    await expectText("[data-testid=key-result]", `partition ${seed.keyPartition} at offset ${seed.keyOffset}`);
    await page.fill("[data-testid=key-key]", "no-such-key");
    await page.click("[data-testid=key-lookup]");
    await page.locator("[data-testid=key-result].error").waitFor();
    await shot("key-window");
  });

  await check("live charts draw the produce rate from the broker's metrics", async () => {
    await page.click("[data-testid=nav-charts]");
    await page.waitForFunction(() => {
      const el = document.querySelector("[data-testid=chart-produce-latest]");
      return el && el.textContent !== "–" && Number(el.textContent) > 0;
    }, null, { timeout: 30000 });
    await shot("charts");
  });

  if (consoleErrors.length) fail(`the page logged errors: ${consoleErrors.join("; ")}`);
  console.log("all console checks passed");
} catch (e) {
  await shot("failure").catch(() => {});
  console.error(`FAIL ${step}: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
