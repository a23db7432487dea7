// Drives the console in Debian's Chromium for tests/integration/test_console.py and prints what
// it saw as one JSON object; the Python side asserts. Usage:
//   node drive.js SCENARIO BASE_URL USER PASSWORD SHOT_DIR [FROM TO]
// SCENARIO: "admin" (every view, screenshots, the live feed after a refresh) or "reader" (a
// user allowed one application).
"use strict";
const puppeteer = require("puppeteer-core");
const path = require("path");

const [scenario, base, user, password, shots, from, to] = process.argv.slice(2);
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

async function main() {
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
  });
  const seen = { consoleErrors: [], failedRequests: [], badResponses: [] };
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 860 });
    await page.authenticate({ username: user, password });
    page.on("console", (m) => { if (m.type() === "error") seen.consoleErrors.push(m.text()); });
    page.on("pageerror", (e) => seen.consoleErrors.push(String(e)));
    page.on("response", (r) => { if (r.status() >= 400) seen.badResponses.push(`${r.status()} ${r.url()}`); });
    page.on("requestfailed", (r) => {
      if (!r.url().endsWith("/events")) seen.failedRequests.push(r.url());
    });
    const shot = (name) => shots && page.screenshot({ path: path.join(shots, name), fullPage: true });
    const texts = (sel) => page.$$eval(sel, (els) => els.map((e) => e.textContent.trim()));

    await page.goto(`${base}/ui/`, { waitUntil: "networkidle0" });
    await page.waitForSelector("#overview-table tbody tr[data-app]", { timeout: 15000 });
    seen.overviewApps = await page.$$eval("#overview-table tbody tr[data-app]", (rs) => rs.map((r) => r.dataset.app));
    seen.overviewHeaders = await texts("#overview-table thead th");
    seen.health = await page.$eval("#health-pill", (e) => e.textContent);
    seen.csp = (await (await fetch(`${base}/ui/`, {
      headers: { Authorization: "Basic " + Buffer.from(`${user}:${password}`).toString("base64") },
    })).headers.get("content-security-policy")) || "";
    await shot("console-overview.png");

    // keyboard: 2 opens the Environment view, j/k move, Enter opens
    await page.keyboard.press("1");
    await page.focus("#overview-table tbody tr[data-app]");
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => location.hash.startsWith("#/env/"), { timeout: 5000 });
    seen.keyboardOpened = await page.evaluate(() => location.hash);

    await page.goto(`${base}/ui/#/env/orders/dev`, { waitUntil: "networkidle0" });
    // the same page may still show the Environment the keyboard opened: wait for this one
    await page.waitForFunction(() => document.querySelector("#env-title").textContent === "orders · dev" &&
      document.querySelector("#env-table tbody tr"), { timeout: 10000 });
    seen.envRows = await page.$$eval("#env-table tbody tr", (rs) => rs.map((r) => {
      const c = r.querySelectorAll("td");
      return { key: c[0].textContent, value: c[1].textContent, source: c[2].querySelector(".src").textContent,
        overridden: [...c[2].querySelectorAll(".layers li")].map((li) => li.textContent) };
    }));
    seen.envPageText = await page.evaluate(() => document.body.innerText);
    await shot("console-environment.png");

    if (scenario === "reader") {
      await page.goto(`${base}/ui/#/env/payments/dev`, { waitUntil: "networkidle0" });
      await page.waitForSelector("#error:not([hidden])", { timeout: 10000 });
      seen.forbiddenError = await page.$eval("#error", (e) => e.textContent);
    }

    if (from && to) {
      await page.goto(`${base}/ui/#/diff?from=${from}&to=${to}`, { waitUntil: "networkidle0" });
      await page.waitForSelector("#diff-pairs tbody tr", { timeout: 10000 });
      seen.diffPairs = await texts("#diff-pairs tbody tr td:first-child");
      await page.goto(`${base}/ui/#/diff?from=${from}&to=${to}&app=orders&profile=prod`, { waitUntil: "networkidle0" });
      await page.waitForFunction(() => document.querySelector("#diff-detail h2")?.textContent === "orders / prod" &&
        document.querySelector("#diff-detail .change"), { timeout: 10000 });
      seen.diffChanges = await page.$$eval("#diff-detail .change", (cs) => cs.map((c) => ({
        key: c.dataset.key, kind: c.classList[1], symbol: c.querySelector(".sym").textContent,
        text: c.textContent })));
      await shot("console-diff.png");
    }

    if (scenario === "admin") {
      await page.goto(`${base}/ui/#/live`, { waitUntil: "domcontentloaded" });
      await page.waitForFunction(() => document.querySelector("#live-state").textContent === "live", { timeout: 10000 });
      const status = await page.evaluate(async () => (await fetch("/actuator/refresh", { method: "POST" })).status);
      seen.refreshStatus = status;
      await page.waitForSelector("#live-feed li", { timeout: 15000 });
      seen.liveFeed = await texts("#live-feed li");
      await shot("console-live.png");
      // a narrow screen: the layout must still fit without horizontal page scrolling
      await page.setViewport({ width: 390, height: 844 });
      await page.goto(`${base}/ui/#/overview`, { waitUntil: "networkidle0" });
      await page.waitForSelector("#overview-table tbody tr[data-app]", { timeout: 10000 });
      seen.phoneOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      await shot("console-phone.png");
    }
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(seen));
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + "\n");
  process.exit(1);
});
