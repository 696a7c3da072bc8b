#!/usr/bin/env python3
"""Browser test of the operator console against a live `tanhui serve` (run by Scripts/console-test.sh).

Pushes events for 12 citizens through the sync API, then drives headless Chromium through
every page: sign in (keyboard), edit the rule set until a problem shows at the right line, fix
it, read the diff, simulate, publish; the dashboard's numbers against the report API's; the
ledger look-up and a reversal; 360 px width; both languages. A screenshot of each page goes
to --screenshots. Exit 0 when every check holds; each failed check prints one line.
"""
import argparse
import datetime
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
import uuid

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
        print("FAIL " + message, file=sys.stderr)
    return condition


def http(base, path, key=None, body=None, method=None, content_type="application/json"):
    request = urllib.request.Request(base + path, data=body, method=method or ("POST" if body is not None else "GET"))
    if key:
        request.add_header("Authorization", "Bearer " + key)
    if body is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def local_day(instant):
    return (instant + datetime.timedelta(hours=8)).strftime("%Y-%m-%d")


def push_events(base, tokens):
    """Per citizen: a metro trip in Nanshan two days ago, a waste check-in, a bike ride in Futian yesterday."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    pushed = []
    for index, (citizen, token) in enumerate(tokens):
        start = now - datetime.timedelta(days=2, hours=1)
        ride = now - datetime.timedelta(days=1, hours=1)
        iso = lambda moment: moment.isoformat().replace("+00:00", "Z")
        events = [
            {"id": str(uuid.uuid4()), "kind": "transit_trip", "province": "CN-GD", "occurred_at": iso(start),
             "ended_at": iso(start + datetime.timedelta(minutes=30)), "data": {"mode": "metro", "distance_m": 8000 + 100 * index, "district": "440305"}},
            {"id": str(uuid.uuid4()), "kind": "waste_sorting", "province": "CN-GD", "occurred_at": iso(start + datetime.timedelta(hours=2))},
            {"id": str(uuid.uuid4()), "kind": "bike_ride", "province": "CN-GD", "occurred_at": iso(ride),
             "ended_at": iso(ride + datetime.timedelta(minutes=15)), "data": {"distance_m": 3000, "district": "440304"}},
        ]
        status, _, body = http(base, "/v1/sync/push", token, json.dumps({"events": events}).encode())
        results = json.loads(body)["results"] if status == 200 else []
        check(status == 200 and all(r["status"] == "accepted" for r in results), f"push {index}: {status} {body[:300]!r}")
        pushed.append((citizen, events, results))
    return pushed


def report_head(base, period, key):
    """The chain sequence the province's report covers (the rollup follows the sealer)."""
    status, _, body = http(base, f"/v1/provinces/CN-GD/reports?{period}&group_by=day", key)
    return json.loads(body)["chain_head"]["chain_seq"] if status == 200 else -1


def wait(driver, condition, what, timeout=15):
    try:
        return WebDriverWait(driver, timeout, ignored_exceptions=[StaleElementReferenceException]).until(lambda d: condition(d))
    except Exception:
        check(False, "timed out waiting for " + what)
        return None


def set_editor(driver, text):
    driver.execute_script("const e = document.getElementById('editor'); e.value = arguments[0]; e.dispatchEvent(new Event('input'));", text)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--rule-set", required=True)
    parser.add_argument("--governed-keys", required=True, help="lines of `role key` for CN-SH: author, approver, approver, publisher")
    parser.add_argument("--screenshots", required=True)
    parser.add_argument("--readme-image", help="also write the dashboard screenshot here")
    args = parser.parse_args()
    base, key, shots = args.base, args.key, args.screenshots
    tokens = [line.split() for line in open(args.tokens) if line.strip()]

    # The console's own headers.
    status, headers, body = http(base, "/console/")
    headers = {k.lower(): v for k, v in headers.items()}
    check(status == 200 and b"<html" in body, f"GET /console/ is {status}")
    policy = headers.get("content-security-policy", "")
    check("script-src 'self'" in policy and "frame-ancestors 'none'" in policy, "console CSP: " + policy)
    check(headers.get("x-content-type-options") == "nosniff", "console nosniff")

    pushed = push_events(base, tokens)
    expected_grams = sum(r["award"]["grams_co2e"] for _, _, results in pushed for r in results if r["status"] == "accepted")
    today = datetime.datetime.now(datetime.timezone.utc)
    period = f"from={local_day(today - datetime.timedelta(days=29))}&to={local_day(today)}"
    # The rollup follows the sealer: wait until the report covers every push.
    report = None
    for _ in range(100):
        status, _, body = http(base, f"/v1/provinces/CN-GD/reports?{period}&group_by=day", key)
        report = json.loads(body) if status == 200 else None
        if report and report["total"]["grams_co2e"] == expected_grams:
            break
        time.sleep(0.2)
    check(report and report["total"]["grams_co2e"] == expected_grams, f"report total {report and report['total']} != pushed {expected_grams} g")

    # The metric follows the rollup too.
    status, _, body = http(base, f"/v1/provinces/CN-GD/reports?{period}&group_by=kind", key)
    by_kind = {c["kind"]: c["grams_co2e"] for c in json.loads(body)["cells"]}
    metric = {}
    for _ in range(50):
        text = http(base, "/metrics")[2].decode()
        metric = {m.group(1): int(float(m.group(2))) for m in re.finditer(r'tanhui_grams_co2e_total\{[^}]*kind="([a-z_]+)"[^}]*\} (\S+)', text)}
        if metric.get("bike_ride") == by_kind.get("bike_ride") and metric.get("transit_trip") == by_kind.get("transit_trip"):
            break
        time.sleep(0.2)
    check(metric.get("bike_ride") == by_kind.get("bike_ride") and metric.get("transit_trip") == by_kind.get("transit_trip"),
          f"tanhui_grams_co2e_total {metric} != report per kind {by_kind}")

    options = webdriver.ChromeOptions()
    for argument in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000", "--lang=zh-CN"]:
        options.add_argument(argument)
    options.binary_location = "/usr/bin/chromium"
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        run(driver, base, key, shots, args, pushed, period)
        # Refused requests (the wrong key's 401, the drafts' 422) are logged by Chromium as network errors; scripts must raise none.
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE" and entry.get("source") != "network"]
        check(not errors, f"browser console errors: {errors[:3]}")
    finally:
        driver.quit()
    if failures:
        print(f"console-test: {len(failures)} failed", file=sys.stderr)
        return 1
    print("console-test: ok")
    return 0


def run(driver, base, key, shots, args, pushed, period):
    shot = lambda name: driver.save_screenshot(os.path.join(shots, name + ".png"))
    by_id = lambda element_id: driver.find_element(By.ID, element_id)

    # Sign in with the keyboard only.
    driver.get(base + "/console/")
    wait(driver, lambda d: d.find_element(By.ID, "page-signin").is_displayed(), "the sign-in page")
    check(by_id("nav-dashboard").get_attribute("textContent") == "数据看板", "Chinese labels by default")
    shot("1-sign-in")
    by_id("signin-province").click()
    by_id("signin-province").send_keys(Keys.TAB)
    check(driver.switch_to.active_element.get_attribute("id") == "signin-key", "TAB moves from province to key")
    driver.switch_to.active_element.send_keys("thk_wrong", Keys.ENTER)
    wait(driver, lambda d: d.find_element(By.ID, "signin-error").text != "", "a refused key's message")
    key_field = by_id("signin-key")
    key_field.clear()
    key_field.send_keys(key, Keys.ENTER)
    wait(driver, lambda d: d.find_element(By.ID, "page-rulesets").is_displayed(), "the rule-set page after sign-in")
    check(driver.execute_script("return sessionStorage.getItem('tanhui.session')").find(key) >= 0, "the key is in session storage")
    check(key not in driver.current_url and driver.get_cookies() == [], "the key is in no URL and no cookie")

    # Rule sets: the editor holds the version in force; break it at a known line.
    document = open(args.rule_set, encoding="utf-8").read()
    wait(driver, lambda d: d.find_element(By.ID, "editor").get_attribute("value") == document, "v1 in the editor")
    wait(driver, lambda d: d.find_element(By.ID, "validation").get_attribute("data-state") == "invalid", "v1 refused (version not above 1)")
    effective = (datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=8))) + datetime.timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0)
    draft = re.sub(r"^version: 1$", "version: 2", document, flags=re.M)
    draft = re.sub(r"^effective_from: .*$", "effective_from: " + effective.isoformat(), draft, flags=re.M)
    lines = draft.split("\n")
    bad_line = next(i for i, line in enumerate(lines) if "grams_per_km: 46.7" in line) + 1
    broken = draft.replace("grams_per_km: 46.7", "grams_per_km: -46.7", 1)
    set_editor(driver, broken)
    problem = wait(driver, lambda d: [li for li in d.find_elements(By.CSS_SELECTOR, "#problems li") if li.get_attribute("data-line") == str(bad_line)],
                   f"a problem at line {bad_line}")
    if problem:
        check(any(li.get_attribute("data-line") == str(bad_line) for li in problem),
              f"the problem is shown at line {bad_line}: {[li.text for li in problem]}")
        column = next((li.get_attribute("data-column") for li in problem if li.get_attribute("data-line") == str(bad_line)), None)
        go = next((li for li in problem if li.get_attribute("data-line") == str(bad_line)), None)
        if go:
            go.find_element(By.CSS_SELECTOR, "button.go").send_keys(Keys.ENTER)
            caret_line = driver.execute_script("const e = document.getElementById('editor'); return e.value.slice(0, e.selectionStart).split('\\n').length;")
            check(caret_line == bad_line, f"'go to' puts the caret on line {bad_line} (got {caret_line}, column {column})")
    shot("2-rule-set-problem")
    set_editor(driver, draft)
    wait(driver, lambda d: d.find_element(By.ID, "validation").get_attribute("data-state") == "valid", "the fixed draft valid")
    check("2" in by_id("validation").text, "valid as version 2")
    diff = by_id("diff").text
    check("- version: 1" in diff and "+ version: 2" in diff, "the diff shows the version change: " + diff[:200])
    check("+ effective_from: " + effective.isoformat() in diff, "the diff shows the new effective_from")
    shot("3-rule-set-diff")

    # Simulate one event of each verdict over the draft.
    now = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=2)
    iso = lambda moment: moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    events = [
        {"id": str(uuid.uuid4()), "kind": "transit_trip", "province": "CN-GD", "occurred_at": iso(now),
         "ended_at": iso(now + datetime.timedelta(minutes=30)), "data": {"mode": "metro", "distance_m": 12000}},
        {"id": str(uuid.uuid4()), "kind": "transit_trip", "province": "CN-GD", "occurred_at": iso(now + datetime.timedelta(hours=1)),
         "ended_at": iso(now + datetime.timedelta(hours=1, minutes=30)), "data": {"mode": "metro", "distance_m": 100}},
    ]
    driver.execute_script("document.getElementById('events').value = arguments[0];", "\n".join(json.dumps(e) for e in events))
    by_id("simulate-button").click()
    totals = wait(driver, lambda d: d.find_elements(By.ID, "simulation-totals"), "simulation totals")
    statuses = [row.get_attribute("data-status") for row in driver.find_elements(By.CSS_SELECTOR, "#simulation-results tbody tr")]
    check(statuses == ["accepted", "rejected"], f"simulated verdicts {statuses}")
    shot("4-simulation")

    # Publish with confirmation, effective_from shown in the province's time zone.
    by_id("publish-button").click()
    wait(driver, lambda d: d.find_element(By.ID, "publish-dialog").is_displayed(), "the publish confirmation")
    summary = by_id("publish-summary").text
    check("Asia/Shanghai" in summary and str(effective.day) in summary, "confirmation names the time zone and day: " + summary)
    shot("5-publish-confirm")
    head_before = report_head(base, period, key)
    by_id("publish-confirm").click()
    wait(driver, lambda d: "2" in d.find_element(By.ID, "publish-result").text and "ok" in d.find_element(By.ID, "publish-result").get_attribute("class"),
         "the publication result")
    # The publication is a chain record the sealer takes within a second: the dashboard below
    # must be compared with a report that already covers it, or the two heads race.
    for _ in range(100):
        if report_head(base, period, key) > head_before:
            break
        time.sleep(0.2)
    check(report_head(base, period, key) > head_before, f"the publication is sealed (report head still {head_before})")
    status, _, body = http(base, "/v1/provinces/CN-GD/rulesets", key)
    check([v["version"] for v in json.loads(body)["rule_sets"]] == [1, 2], "version 2 is published: " + body.decode()[:200])
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#versions tr[data-version='2']"), "v2 in the version list")
    shot("6-published")

    # Dashboard: every figure equals the report API's.
    driver.get(base + "/console/#dashboard")
    rows = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#day-table tbody tr"), "the per-day table")
    start, end = by_id("report-from").get_attribute("value"), by_id("report-to").get_attribute("value")
    check(f"from={start}&to={end}" == period, f"default period {start}…{end} is the last 30 local days ({period})")
    status, _, body = http(base, f"/v1/provinces/CN-GD/reports?from={start}&to={end}&group_by=day", key)
    report = json.loads(body)
    shown = {}
    for row in rows or []:
        shown[row.get_attribute("data-day")] = {cell.get_attribute("data-field"): cell.text for cell in row.find_elements(By.CSS_SELECTOR, "td[data-field]")}
    check(len(shown) == len(report["cells"]) and len(shown) >= 2, f"dashboard days {sorted(shown)} vs report {[c['day'] for c in report['cells']]}")
    for cell in report["cells"]:
        row = shown.get(cell["day"], {})
        for field in ["accepted", "rejected", "grams_co2e", "points", "citizens"]:
            check(row.get(field) == str(cell[field]), f"{cell['day']} {field}: dashboard {row.get(field)} report {cell[field]}")
    total = report["total"]
    figures = {dd.get_attribute("data-field"): dd.text for dd in driver.find_elements(By.CSS_SELECTOR, "#totals dd")}
    check(figures.get("points") == str(total["points"]) and figures.get("accepted") == str(total["accepted"]), f"totals {figures} vs {total}")
    check(figures.get("tonnes") == f"{total['grams_co2e'] / 1e6:.6f}", f"tonnes {figures.get('tonnes')} vs {total['grams_co2e']} g")
    check(by_id("chain-head").get_attribute("data-chain-seq") == str(report["chain_head"]["chain_seq"]), "the chain head shown is the report's")
    bars = driver.find_elements(By.CSS_SELECTOR, "#chart-kind svg rect")
    check(len(bars) == 3, f"one bar per kind ({len(bars)})")
    check(len(driver.find_elements(By.CSS_SELECTOR, "#chart-day svg path")) == 2, "two lines per day (tonnes, points)")
    shot("7-dashboard")
    if args.readme_image:
        driver.save_screenshot(args.readme_image)

    # Ledger: a citizen's statement, then a reversal of one award.
    citizen, events_pushed, _ = pushed[0]
    driver.get(base + "/console/#ledger")
    wait(driver, lambda d: d.find_element(By.ID, "page-ledger").is_displayed(), "the ledger page")
    by_id("citizen").send_keys(citizen, Keys.ENTER)
    statement_rows = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#statement tbody tr"), "statement rows")
    check(statement_rows is not None and len(statement_rows) == 3, f"3 statement lines ({len(statement_rows or [])})")
    by_id("reversal-event").send_keys(events_pushed[0]["id"])
    by_id("reversal-reason").send_keys("console test", Keys.ENTER)
    wait(driver, lambda d: "ok" in (d.find_element(By.ID, "reversal-result").get_attribute("class") or ""), "the reversal result")
    by_id("statement-button").click()
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#statement tbody tr")) == 4, "the reversal in the statement")
    shot("8-ledger")

    governance(driver, base, args, shot, by_id)

    # English labels, and 360 px wide without horizontal scrolling.
    by_id("language").click()
    check(by_id("nav-dashboard").text == "Dashboard", "English labels after switching")
    driver.set_window_size(360, 800)
    driver.get(base + "/console/#dashboard")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#day-table tbody tr"), "the dashboard at 360 px")
    overflow = driver.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    check(overflow <= 0, f"no horizontal scrolling at 360 px ({overflow} px too wide)")
    shot("9-dashboard-360px")


def sign_in(driver, base, province, key):
    driver.get(base + "/console/#signin")
    if driver.find_element(By.ID, "nav").is_displayed():
        driver.find_element(By.ID, "sign-out").click()
    wait(driver, lambda d: d.find_element(By.ID, "page-signin").is_displayed(), "the sign-in page")
    field = driver.find_element(By.ID, "signin-province")
    field.clear()
    field.send_keys(province)
    driver.find_element(By.ID, "signin-key").send_keys(key, Keys.ENTER)
    wait(driver, lambda d: d.find_element(By.ID, "page-rulesets").is_displayed(), f"signed in to {province}")


def open_proposal(driver, base, proposal_id):
    driver.get(base + "/console/#proposals")
    # The list is re-rendered whenever it reloads: find and click in one step, again if it went stale.
    def click_open(d):
        try:
            buttons = d.find_elements(By.CSS_SELECTOR, f"button.open-proposal[data-id='{proposal_id}']")
            if buttons:
                buttons[0].click()
                return True
        except StaleElementReferenceException:
            pass
        return False
    wait(driver, click_open, "the proposal in the list")
    wait(driver, lambda d: d.find_element(By.ID, "proposal-detail").get_attribute("data-id") == proposal_id, "the proposal's detail")


def governance(driver, base, args, shot, by_id):
    """CN-SH is governed (2 approvals, no notice): a draft is proposed from the editor, its author
    cannot approve it, two approvers approve, a publisher publishes; every figure is the API's."""
    keys = [line.split() for line in open(args.governed_keys) if line.strip()]
    check([role for role, _ in keys] == ["author", "approver", "approver", "publisher"], f"governed keys {[r for r, _ in keys]}")
    author, approver_a, approver_b, publisher = [key for _, key in keys]
    effective = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)).replace(microsecond=0)
    until = effective + datetime.timedelta(days=365)
    iso = lambda moment: moment.isoformat().replace("+00:00", "Z")
    document = open(os.path.join(os.path.dirname(args.rule_set), "CN-SH.yaml")).read()
    draft = document.replace("version: 1\n", "version: 2\n", 1).replace(
        "effective_from: 2026-01-01T00:00:00+08:00", f"effective_from: {iso(effective)}\nvalid_until: {iso(until)}", 1)
    check(draft != document and "valid_until" in draft, "the CN-SH draft differs from version 1")

    sign_in(driver, base, "CN-SH", author)
    wait(driver, lambda d: d.find_element(By.ID, "editor").get_attribute("value").strip() != "", "version 1 in the editor")
    set_editor(driver, draft)
    wait(driver, lambda d: d.find_element(By.ID, "validation").get_attribute("data-state") == "valid", "the CN-SH draft valid")
    by_id("publish-button").click()
    wait(driver, lambda d: d.find_element(By.ID, "publish-dialog").is_displayed(), "the publish confirmation")
    by_id("publish-confirm").click()
    wait(driver, lambda d: "error" in (d.find_element(By.ID, "publish-result").get_attribute("class") or ""), "direct publication refused")
    check("propos" in by_id("publish-result").text.lower(), "a governed province refuses direct publication: " + by_id("publish-result").text)
    by_id("propose-button").click()
    wait(driver, lambda d: d.find_element(By.ID, "page-proposals").is_displayed()
         and d.find_element(By.ID, "proposal-detail").get_attribute("data-state") == "open", "the new proposal, open")
    proposal_id = by_id("proposal-detail").get_attribute("data-id")
    status, _, body = http(base, f"/v1/provinces/CN-SH/ruleset-proposals/{proposal_id}", author)
    proposal = json.loads(body) if status == 200 else {}
    check(proposal.get("version") == 2 and proposal.get("state") == "open" and proposal.get("required_approvals") == 2,
          f"the API's proposal {status} {body[:200]!r}")
    check(proposal.get("valid_until") == iso(until), f"valid_until {proposal.get('valid_until')} is the document's {iso(until)}")
    changes = [item.text for item in driver.find_elements(By.CSS_SELECTOR, "#proposal-changes li")]
    check(changes == proposal.get("diff", {}).get("changes"), f"the diff shown {changes} is the API's")
    check(any(line.startswith("version: 1 → 2") for line in changes), f"the diff names the version change: {changes}")
    shot("10-proposal")
    # The author may not approve their own proposal (no key is exempt).
    by_id("approve-button").click()
    wait(driver, lambda d: "error" in (d.find_element(By.ID, "proposal-result").get_attribute("class") or ""), "self-approval refused")
    check("403" in by_id("proposal-result").text, "self-approval is a 403: " + by_id("proposal-result").text)

    for count, approver in [(1, approver_a), (2, approver_b)]:
        sign_in(driver, base, "CN-SH", approver)
        open_proposal(driver, base, proposal_id)
        by_id("review-comment").send_keys(f"approval {count}: factors checked")
        by_id("approve-button").click()
        wait(driver, lambda d: d.find_element(By.ID, "proposal-detail").get_attribute("data-counted-approvals") == str(count), f"{count} approval(s) counted")
        rows = driver.find_elements(By.CSS_SELECTOR, "#proposal-reviews tbody tr[data-counts='true']")
        check(len(rows) == count, f"{count} counting review rows ({len(rows)})")
    shot("11-proposal-approved")

    sign_in(driver, base, "CN-SH", publisher)
    open_proposal(driver, base, proposal_id)
    by_id("publish-proposal-button").click()
    wait(driver, lambda d: d.find_element(By.ID, "proposal-detail").get_attribute("data-state") == "published", "the proposal published")
    check("ok" in (by_id("proposal-result").get_attribute("class") or ""), "publication result: " + by_id("proposal-result").text)
    status, _, body = http(base, "/v1/provinces/CN-SH/rulesets", publisher)
    versions = json.loads(body)["rule_sets"] if status == 200 else []
    check([v["version"] for v in versions] == [1, 2], f"CN-SH versions {body[:200]!r}")
    driver.get(base + "/console/#rulesets")
    cell = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#versions tr[data-version='2'] td[data-field='valid_until']"), "v2 in the list")
    check(cell and versions and cell[0].text == versions[-1].get("valid_until"), f"valid_until shown {cell and cell[0].text} is the API's")
    shot("12-governed-published")


if __name__ == "__main__":
    sys.exit(main())
