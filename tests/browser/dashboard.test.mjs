// The dashboard in headless Chromium, during a `tollguard demo` run (tests/browser/run.sh starts
// the demo and passes its info file): sign in, see the attack's alert arrive over the live feed,
// block an account from its page and see the next authorization denied, open the attacked
// account's incident and download its CSV, and check that a customer sees only its own account.
// Screenshots go to SHOTS (target/browser/) for people to look at.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const info = JSON.parse(readFileSync(process.env.DEMO_INFO, "utf8"));
const SHOTS = process.env.SHOTS ?? "target/browser";
mkdirSync(SHOTS, { recursive: true });

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync",
    ],
    // playwright gives each launch a fresh, temporary --user-data-dir of its own.
  });
});
after(async () => {
  await browser?.close();
});

/** A fresh page signed in with `token` (through the sign-in form, as a person would). */
async function signedIn(token, viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport, acceptDownloads: true });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  await page.goto(`${info.url}/ui/login`);
  await page.fill("input[name=token]", token);
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  return page;
}

/** POST /v1/authorize as the switch would, with the operator's token. */
async function authorize(account, to, callId) {
  const r = await fetch(`${info.url}/v1/authorize`, {
    method: "POST",
    headers: { authorization: `Bearer ${info.operator_token}`, "content-type": "application/json" },
    body: JSON.stringify({ call_id: callId, account, from: "201", to }),
  });
  assert.equal(r.status, 200, `authorize answered ${r.status}`);
  return r.json();
}

test("the attack's alert appears live on the overview, without a reload", async () => {
  const page = await signedIn(info.operator_token);
  assert.match(page.url(), /\/ui\/$/);
  await page.screenshot({ path: join(SHOTS, "overview-before.png"), fullPage: true });
  // The page was loaded once; a row the feed added carries the class "new".
  const loads = [];
  page.on("load", () => loads.push(Date.now()));
  const row = page.locator(`table#feed tbody tr.new:has-text("${info.attacked_account}")`).first();
  await row.waitFor({ timeout: 90_000 });
  assert.equal(loads.length, 0, "the page reloaded instead of taking the alert from the feed");
  assert.match(await row.innerText(), /critical/);
  await page.screenshot({ path: join(SHOTS, "overview-alert.png"), fullPage: true });
  // The chart and the cards are there.
  assert.ok(await page.locator("svg").count() >= 1, "no spend chart");
  assert.match(await page.locator(".cards").innerText(), /Calls per second/);
});

test("blocking an account from its page denies its next call", async () => {
  const account = "acct003";
  const before = await authorize(account, "0201234567", `browser-before-${Date.now()}`);
  assert.equal(before.allow, true, `a national call of ${account} should pass before the block`);
  const page = await signedIn(info.operator_token);
  await page.goto(`${info.url}/ui/accounts/${account}`);
  await page.fill("#block-form input[name=reason]", "browser test: block from the dashboard");
  await page.click("#block");
  await page.locator("#msg", { hasText: "Blocked" }).waitFor();
  await page.waitForLoadState("load");
  await page.locator("h1 .badge.blocked").waitFor();
  await page.screenshot({ path: join(SHOTS, "account-blocked.png"), fullPage: true });
  const after = await authorize(account, "0201234567", `browser-after-${Date.now()}`);
  assert.equal(after.allow, false, "the call after the block was allowed");
  assert.match(after.explanation.join(" "), /blocked/, `explanation: ${after.explanation}`);
  // Unblocked from the page again: calls pass.
  await page.click("#unblock");
  await page.locator("#msg", { hasText: "Unblocked" }).waitFor();
  const again = await authorize(account, "0201234567", `browser-again-${Date.now()}`);
  assert.equal(again.allow, true, "the call after the unblock was denied");
});

test("the attacked account's incident page and its CSV", async () => {
  const page = await signedIn(info.operator_token);
  await page.goto(`${info.url}/ui/incidents`);
  const link = page.locator(`tr:has-text("${info.attacked_account}") a[href^="/ui/incidents/"]`).first();
  await Promise.all([page.waitForNavigation(), link.click()]);
  const text = await page.locator("body").innerText();
  assert.match(text, new RegExp(info.attacked_account));
  assert.match(text, /670/, "the incident page does not show the East Timor calls");
  await page.screenshot({ path: join(SHOTS, "incident.png"), fullPage: true });
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("a#csv")]);
  const path = join(SHOTS, "incident.csv");
  await download.saveAs(path);
  const csv = readFileSync(path, "utf8").split("\n");
  assert.match(csv[0], /call_id/, `CSV header: ${csv[0]}`);
  const attackLines = csv.filter(l => l.includes("attack-"));
  assert.ok(attackLines.length >= 1, "the CSV lists none of the attack's calls");
  assert.ok(attackLines.every(l => l.includes("TL")), "an attack call is not to East Timor (TL)");
});

test("a customer sees its own account only, on a phone", async () => {
  const page = await signedIn(info.customer_token, { width: 390, height: 844 });
  assert.match(page.url(), new RegExp(`/ui/accounts/${info.attacked_account}$`));
  await page.locator("h1", { hasText: info.attacked_account }).waitFor();
  // Nothing wider than the screen but the tables' own scrolling boxes.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `the page is ${overflow} px wider than the phone`);
  await page.screenshot({ path: join(SHOTS, "customer-phone.png"), fullPage: true });
  const other = await page.goto(`${info.url}/ui/accounts/acct003`);
  assert.equal(other.status(), 403);
  const overview = await page.goto(`${info.url}/ui/`);
  assert.match(page.url(), new RegExp(`/ui/accounts/${info.attacked_account}$`), `overview went to ${page.url()}`);
  assert.equal(overview.status(), 200);
  // The API with the cookie obeys the same scope.
  const status = await page.evaluate(async () =>
    (await fetch("/v1/accounts/acct003", { headers: { "X-Tollguard-UI": "1" } })).status);
  assert.equal(status, 403);
});
