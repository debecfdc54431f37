// End-to-end tests of the web console in Debian's headless Chromium, driven by playwright-core.
// Run by tests/test_console_e2e.py, which starts the servers and passes (environment):
//   CONSOLE_URL, CONSOLE_KEY_ID, CONSOLE_SECRET   a server and an admin key for it
//   CONSOLE_SHORT_URL                              a server whose sessions live FACEPRINT_SESSION_TTL=2 s
//   CONSOLE_EXAMPLES, CONSOLE_VIDEO                the example photos folder, the Hamilton clip
//   CONSOLE_OUT                                    where screenshots go (the test's temp folder)
// Prints "ok N - name" or "not ok N - name: why" per test and "N passed, N failed"; exits 1 on a failure.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const env = (name) => {
  if (!process.env[name]) throw new Error(`${name} is not set`);
  return process.env[name];
};
const URL = env("CONSOLE_URL"), KEY = env("CONSOLE_KEY_ID"), SECRET = env("CONSOLE_SECRET");
const SHORT_URL = env("CONSOLE_SHORT_URL"), EXAMPLES = env("CONSOLE_EXAMPLES"), VIDEO = env("CONSOLE_VIDEO");
const OUT = env("CONSOLE_OUT");
const ONLY = (process.env.CONSOLE_ONLY || "").split(",").filter(Boolean);
const COLLECTION = "e2e";
const photo = (name) => join(EXAMPLES, name);
mkdirSync(OUT, { recursive: true });

class Failure extends Error {}
function expect(condition, message) { if (!condition) throw new Failure(message); }

const profile = mkdtempSync(join(tmpdir(), "faceprint-chromium-"));
// A fresh --user-data-dir (playwright passes the folder given here as that flag).
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 800 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
// One signed-in tab carries the scenario from test to test, as a person would; the sign-in failure tests
// get their own tabs (sessionStorage is per tab, so they start signed out).
const page = await context.newPage();
const consoleErrors = [];
page.on("pageerror", (err) => consoleErrors.push(String(err)));

async function shot(target, name, fullPage = true) {
  const path = join(OUT, `${name}.png`);
  await target.screenshot({ path, fullPage });
  return path;
}
async function signIn(target, url, key, secret) {
  await target.goto(url + "/");
  await target.getByLabel("AccessKeyId").fill(key);
  await target.getByLabel("SecretAccessKey").fill(secret);
  await target.getByRole("button", { name: "Sign in" }).click();
}
async function view(name) {
  await page.getByRole("navigation", { name: "Views" }).getByRole("button", { name }).click();
}
async function noError(target = page) {
  const box = target.locator("#error");
  if (await box.isVisible()) throw new Failure("the console shows an error: " + (await box.innerText()));
}
async function indexPhotos(names) {
  await view("Faces & users");
  await page.setInputFiles("#index-files", names.map(photo));
  await page.getByRole("button", { name: "Index", exact: true }).click();
  await page.locator("#index-result li").nth(names.length - 1).waitFor({ timeout: 120_000 });
  await page.locator("#faces-table tbody tr td.mono").first().waitFor();
  await noError();
}

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

test("sign in with an access key", async () => {
  await signIn(page, URL, KEY, SECRET);
  await page.getByRole("navigation", { name: "Views" }).waitFor();
  await noError();
  const token = await page.evaluate(() => JSON.parse(sessionStorage.getItem("faceprint.session")).token);
  expect(token && token.startsWith("fps1."), "no session token in sessionStorage");
  expect(await page.evaluate(() => localStorage.length) === 0, "something was put in localStorage");
  await shot(page, "01-signed-in");
});

test("create a collection and index three photos", async () => {
  await view("Collections");
  await page.getByLabel("New collection id").fill(COLLECTION);
  await page.getByRole("button", { name: "Create" }).click();
  await page.getByRole("button", { name: `Use collection ${COLLECTION}` }).waitFor();
  await noError();
  await indexPhotos(["obama.jpg", "biden.jpg", "obama2.jpg"]);
  const ids = await page.locator("#faces-table tbody tr td:nth-child(3)").allInnerTexts();
  expect(JSON.stringify(ids.sort()) === JSON.stringify(["biden", "obama", "obama2"]), "faces listed: " + ids);
  await shot(page, "02-faces");
  await view("Collections");
  const row = page.locator("#collections-table tbody tr", { hasText: COLLECTION });
  await row.locator("td:nth-child(2)", { hasText: "3" }).waitFor();
  expect((await row.innerText()).includes("false match"), "the default threshold's meaning is missing");
  await shot(page, "02-collection-indexed");
});

test("create a user and associate a face with it", async () => {
  await view("Faces & users");
  await page.getByLabel("New user id").fill("barack");
  await page.getByRole("button", { name: "Create user" }).click();
  await page.locator("#users-table tbody tr", { hasText: "barack" }).waitFor();
  await page.getByLabel("Select face obama", { exact: true }).check();
  await page.getByLabel("User", { exact: true }).selectOption("barack");
  await page.getByRole("button", { name: "Associate selected faces" }).click();
  await page.locator("#faces-table tbody tr", { hasText: "barack" }).waitFor();
  await noError();
  const row = await page.locator("#faces-table tbody tr", { hasText: "barack" }).innerText();
  expect(row.includes("obama") && !row.includes("obama2"), "associated: " + row);
  await shot(page, "02-faces-and-users");
});

test("search two_people.jpg: both people matched, each on their own box", async () => {
  await view("Search a photo");
  await page.setInputFiles("#search-file", photo("two_people.jpg"));
  await page.getByRole("button", { name: "Search every face" }).click();
  await page.locator("#search-faces .face").nth(1).waitFor({ timeout: 60_000 });
  await noError();
  const tags = await page.locator("#search-figure .box .tag").allInnerTexts();
  expect(tags.length === 2, "boxes: " + JSON.stringify(tags));
  const obama = tags.findIndex((t) => / obama/.test(t)), biden = tags.findIndex((t) => / biden/.test(t));
  expect(obama >= 0 && biden >= 0 && obama !== biden, "box labels: " + JSON.stringify(tags));
  expect(tags.every((t, i) => t.startsWith(String(i + 1) + " ")), "boxes are not numbered: " + JSON.stringify(tags));
  const cards = await page.locator("#search-faces .face").allInnerTexts();
  expect(/Similarity/.test(cards[0]) && /False match rate/.test(cards[0]), "a face card lacks Similarity/FMR");
  expect(cards[obama].includes("obama") && !cards[obama].includes("biden"), "face " + (obama + 1) + ": " + cards[obama]);
  expect(cards[biden].includes("biden") && !cards[biden].includes("obama"), "face " + (biden + 1) + ": " + cards[biden]);
  expect(/Threshold used/.test(await page.locator("#search-summary").innerText()), "no threshold shown");
  await shot(page, "03-search-two-people", false);
  await page.setViewportSize({ width: 390, height: 844 });
  await shot(page, "03-search-two-people-390px");
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await page.setViewportSize({ width: 1280, height: 800 });
  expect(overflow <= 1, `the page is ${overflow}px wider than a 390px screen`);
});

test("compare two photos", async () => {
  await view("Compare");
  await page.setInputFiles("#compare-source", photo("obama.jpg"));
  await page.setInputFiles("#compare-target", photo("two_people.jpg"));
  await page.getByRole("button", { name: "Compare the photos" }).click();
  await page.locator("#compare-table tbody tr").nth(1).waitFor({ timeout: 60_000 });
  await noError();
  const verdicts = await page.locator("#compare-table tbody tr td:last-child").allInnerTexts();
  expect(verdicts.filter((v) => v.startsWith("Yes")).length === 1, "verdicts: " + verdicts);
  expect(verdicts.filter((v) => v.startsWith("No")).length === 1, "verdicts: " + verdicts);
  const text = await page.locator("#compare-result").innerText();
  expect(/1:1 default threshold is Similarity/.test(text) && /False match rate/.test(text), text);
  await shot(page, "04-compare");
});

test("run the Hamilton video search and see both people on the timeline", async () => {
  await indexPhotos(["lin-manuel-miranda.png", "alex-lacamoire.png"]);
  await view("Video");
  await page.setInputFiles("#video-file", VIDEO);
  await page.getByRole("button", { name: "Start the video search" }).click();
  await page.locator("#video-timeline .track").first().waitFor({ timeout: 300_000 });
  await noError();
  const people = await page.locator("#video-timeline .track:not(.unmatched)").evaluateAll((n) => n.map((e) => e.dataset.person));
  expect(people.includes("lin-manuel-miranda") && people.includes("alex-lacamoire"), "matched on the timeline: " + people);
  const spans = await page.locator("#video-timeline .track:not(.unmatched) .span").count();
  expect(spans >= 2, "no time ranges drawn");
  await shot(page, "05-video-timeline");
});

test("the audit view shows the searches just made, and the chain verifies", async () => {
  await view("Audit");
  await page.getByLabel("Operation").selectOption("SearchFacesByImage");
  await page.getByRole("button", { name: "Show" }).click();
  await page.locator("#chain-status").waitFor();
  await noError();
  expect((await page.locator("#chain-status").innerText()).startsWith("Chain verified"), "chain not verified");
  const rows = await page.locator("#audit-table tbody tr.audit-row").allInnerTexts();
  expect(rows.length === 2, `${rows.length} SearchFacesByImage rows, expected one per face of two_people.jpg`);
  expect(rows.every((r) => r.includes("SearchFacesByImage") && r.includes(COLLECTION) && /face \d of 2/.test(r)), rows.join("\n"));
  await page.getByLabel("Operation").selectOption("");
  await page.getByRole("button", { name: "Show" }).click();
  await page.locator("#audit-table tbody tr.audit-row", { hasText: "StartFaceSearch" }).first().waitFor();
  const all = await page.locator("#audit-table tbody tr.audit-row td:nth-child(3)").allInnerTexts();
  for (const op of ["CompareFaces", "IndexFaces", "CreateSession", "CreateCollection"]) expect(all.includes(op), op + " missing from the audit view");
  await shot(page, "06-audit");
});

test("accuracy: the calibration curve is drawn", async () => {
  await view("Accuracy");
  await page.locator("#calibration-curve polyline").waitFor();
  await noError();
  const points = await page.locator("#calibration-curve polyline").getAttribute("points");
  expect(points.split(" ").length > 100, "too few curve points");
  await shot(page, "07-accuracy");
  const [report] = await Promise.all([
    context.waitForEvent("page"),
    page.getByRole("button", { name: "Open the audit report" }).click(),
  ]);
  await report.waitForLoadState();
  await report.locator("h1").waitFor();
  expect((await report.locator("h1").innerText()) === "faceprint demographic audit", "report not opened");
  const styled = await report.evaluate(() => getComputedStyle(document.querySelector("h1")).color);
  const drawn = await report.evaluate(() => document.images[0].complete && document.images[0].naturalWidth > 0);
  expect(styled === "rgb(11, 92, 173)" && drawn, `the report's style (${styled}) or figure (${drawn}) is missing`);
  await shot(report, "07-audit-report");
  await report.close();
});

test("every control is labelled and reachable by keyboard", async () => {
  const unlabelled = await page.evaluate(() => [...document.querySelectorAll("input, select, button")]
    .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute("aria-label") && !e.textContent.trim() && !e.closest("label"))
    .map((e) => e.outerHTML.slice(0, 80)));
  expect(unlabelled.length === 0, "unlabelled: " + unlabelled.join(" | "));
  const untabbable = await page.evaluate(() => [...document.querySelectorAll("input, select, button")].filter((e) => e.tabIndex < 0).length);
  expect(untabbable === 0, untabbable + " controls are out of the tab order");
  await page.bringToFront();
  await view("Search a photo");
  await page.evaluate(() => { document.activeElement.blur(); window.scrollTo(0, 0); });
  const reached = [];
  for (let i = 0; i < 60; i += 1) {
    await page.keyboard.press("Tab");
    reached.push(await page.evaluate(() => {
      const a = document.activeElement;
      return a === document.body ? "(page)" : a.id || a.getAttribute("aria-label") || a.textContent.trim().slice(0, 30);
    }));
  }
  for (const id of ["collection", "sign-out", "Compare", "Audit", "search-file", "search-quality", "search-threshold", "Search every face"]) {
    expect(reached.includes(id), `Tab never reaches ${id}: ${reached.join(", ")}`);
  }
  await page.keyboard.press("Shift+Tab");
  await shot(page, "09-keyboard-focus", false);
});

test("every view fits a 390-pixel phone screen", async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  const wide = [];
  for (const name of ["Collections", "Faces & users", "Search a photo", "Compare", "Video", "Audit", "Accuracy"]) {
    await view(name);
    await page.waitForTimeout(300);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 1) wide.push(`${name} by ${overflow}px`);
    if (name === "Video") await shot(page, "10-video-390px");
  }
  await page.setViewportSize({ width: 1280, height: 800 });
  expect(wide.length === 0, "wider than the screen: " + wide.join(", "));
});

test("a wrong key gives a clear message and no data", async () => {
  const p = await context.newPage();
  await signIn(p, URL, KEY, "not-the-secret");
  await p.locator("#error").waitFor();
  const text = await p.locator("#error").innerText();
  expect(text.includes("UnrecognizedClientException") && text.includes("access key or secret is not right"), text);
  expect(await p.locator("#tabs").isHidden() && await p.locator("#collections-table tbody tr").count() === 0, "data shown");
  expect(await p.evaluate(() => sessionStorage.getItem("faceprint.session")) === null, "a session was kept");
  await shot(p, "08-wrong-key");
  await p.close();
});

test("an expired session gives a clear message and no data", async () => {
  const p = await context.newPage();
  await p.setViewportSize({ width: 390, height: 844 });
  await signIn(p, SHORT_URL, KEY, SECRET);
  await p.getByRole("navigation", { name: "Views" }).waitFor();
  await p.waitForTimeout(3500); // FACEPRINT_SESSION_TTL=2 on that server
  await p.getByRole("button", { name: "Audit" }).click();
  await p.locator("#error").waitFor();
  const text = await p.locator("#error").innerText();
  expect(text.includes("ExpiredTokenException") && text.includes("session has expired"), text);
  expect(await p.locator("#signin").isVisible() && await p.locator("#tabs").isHidden(), "still signed in");
  expect(await p.locator("#audit-table tbody tr").count() === 0, "audit records shown");
  expect(await p.evaluate(() => sessionStorage.getItem("faceprint.session")) === null, "the expired token was kept");
  await shot(p, "09-expired-session");
  await p.close();
});

let passed = 0, failed = 0;
for (const [i, t] of tests.entries()) {
  if (ONLY.length && !ONLY.some((o) => t.name.includes(o))) continue;
  const start = Date.now();
  try {
    await t.fn();
    passed += 1;
    console.log(`ok ${i + 1} - ${t.name} (${((Date.now() - start) / 1000).toFixed(1)} s)`);
  } catch (err) {
    failed += 1;
    console.log(`not ok ${i + 1} - ${t.name}: ${err instanceof Failure ? err.message : err.stack}`);
    await shot(page, `failed-${i + 1}`).catch(() => {});
  }
}
if (consoleErrors.length) { failed += 1; console.log("not ok - script errors in the page: " + consoleErrors.join("; ")); }
await context.close();
rmSync(profile, { recursive: true, force: true });
console.log(`console: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
