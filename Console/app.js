// Tanhui operator console: plain JavaScript, no build step, no libraries. Everything it shows
// comes from the public HTTP API (Schema/openapi.yaml) with the operator key of this tab's
// session storage. Data is only ever written into the page as text (never as HTML).
"use strict";

const LABELS = {
  en: {
    skip: "Skip to content", console: "console", rulesets: "Rule sets", dashboard: "Dashboard", ledger: "Ledger",
    signOut: "Sign out", signIn: "Sign in", province: "Province", operatorKey: "Operator key",
    keyNote: "The key stays in this tab's session storage only.", versions: "Published versions", version: "Version",
    effectiveFrom: "Effective from", methodology: "Methodology", publishedBy: "Published by", startFrom: "Start from version",
    load: "Load", document: "Document (YAML or JSON)", diff: "Changes against the version in force", simulate: "Simulate",
    eventsHelp: "Events (JSON lines or a JSON array)", upload: "Upload events", publish: "Publish", publishDots: "Publish…",
    confirmPublish: "Publish this rule set?", cancel: "Cancel", from: "From", to: "To", show: "Show", csv: "Download CSV",
    perDay: "Tonnes CO2e and points per day", perKind: "Tonnes CO2e per kind", perDistrict: "Tonnes CO2e per district",
    perDayTable: "Per day", day: "Day", accepted: "Accepted", rejected: "Rejected", grams: "Grams CO2e", points: "Points",
    citizens: "Citizens", citizen: "Citizen id", lookUp: "Look up", kind: "Kind", event: "Event", time: "Time", reason: "Reason",
    more: "More", reverse: "Reverse", valid: "Valid: version", invalid: "Problems", checking: "Checking…",
    line: "line", column: "column", goTo: "Go to", noDiff: "No changes.", base: "Compared with version",
    noBase: "No version is in force yet: everything is new.", tonnes: "Tonnes CO2e", suppressed: "suppressed",
    chainHead: "Covers the sealed chain through link", hash: "hash", threshold: "cells with fewer than N citizens are suppressed",
    totalAccepted: "Accepted events", totalRejected: "Rejected events", totalTonnes: "Tonnes CO2e", totalPoints: "Points",
    totalCitizens: "Citizens", published: "Published version", balance: "Balance", reversed: "Reversed: transaction",
    summary: "Version V of P takes effect at T.", unauthorized: "Unknown or revoked key, or not for this province.",
    noEvents: "Give at least one event.", badEvents: "Events must be JSON lines or a JSON array.", totalsLine: "Totals",
    cursor: "Line L, column C", invalidItem: "invalid", none: "(none)",
    proposals: "Proposals", validUntil: "Valid until", propose: "Propose for review", proposalList: "Latest proposals, newest first",
    governedNote: "A governed province publishes through review: propose the draft, approvers approve it, a publisher publishes it.",
    stateLabel: "State", approvals: "Approvals", author: "Author", open: "Open", impact: "Impact over recent accepted events",
    events: "Events", changed: "Changed", pointsInForce: "Points in force", pointsProposed: "Points proposed", reviews: "Reviews",
    reviewer: "Reviewer", verdict: "Verdict", counts: "Counts", comment: "Comment", approve: "Approve", reject: "Reject",
    publishProposal: "Publish the proposal", proposed: "Proposed: version", proposalOf: "Proposal for version",
    earliest: "Earliest effective_from", issues: "Problems", yes: "yes", no: "no", reviewed: "Review recorded.",
    "state.open": "open", "state.rejected": "rejected", "state.published": "published", "state.invalid": "invalid",
  },
  zh: {
    skip: "跳到正文", console: "管理台", rulesets: "规则集", dashboard: "数据看板", ledger: "账本",
    signOut: "退出", signIn: "登录", province: "省份", operatorKey: "运营密钥",
    keyNote: "密钥只保存在本标签页的会话存储中。", versions: "已发布版本", version: "版本",
    effectiveFrom: "生效时间", methodology: "方法学", publishedBy: "发布者", startFrom: "从版本开始",
    load: "载入", document: "文档（YAML 或 JSON）", diff: "与现行版本的差异", simulate: "模拟",
    eventsHelp: "事件（JSON 行或 JSON 数组）", upload: "上传事件", publish: "发布", publishDots: "发布…",
    confirmPublish: "确认发布此规则集？", cancel: "取消", from: "起", to: "止", show: "查看", csv: "下载 CSV",
    perDay: "每日减排量（吨 CO2e）与积分", perKind: "各类行为减排量（吨 CO2e）", perDistrict: "各区县减排量（吨 CO2e）",
    perDayTable: "每日明细", day: "日期", accepted: "已采纳", rejected: "已拒绝", grams: "克 CO2e", points: "积分",
    citizens: "市民数", citizen: "市民编号", lookUp: "查询", kind: "类型", event: "事件", time: "时间", reason: "原因",
    more: "更多", reverse: "冲正", valid: "有效：版本", invalid: "问题", checking: "检查中…",
    line: "行", column: "列", goTo: "定位", noDiff: "没有变化。", base: "对比版本",
    noBase: "尚无现行版本：全部为新增。", tonnes: "吨 CO2e", suppressed: "已隐去",
    chainHead: "覆盖已封存哈希链至第", hash: "哈希", threshold: "市民数少于 N 的单元格已隐去",
    totalAccepted: "采纳事件", totalRejected: "拒绝事件", totalTonnes: "吨 CO2e", totalPoints: "积分",
    totalCitizens: "市民数", published: "已发布版本", balance: "余额", reversed: "已冲正：交易",
    summary: "P 的版本 V 将于 T 生效。", unauthorized: "密钥无效、已吊销或不适用于该省份。",
    noEvents: "请至少提供一个事件。", badEvents: "事件须为 JSON 行或 JSON 数组。", totalsLine: "合计",
    cursor: "第 L 行，第 C 列", invalidItem: "无效", none: "（无）",
    proposals: "提案", validUntil: "有效期至", propose: "提交审核", proposalList: "最近的提案（新的在前）",
    governedNote: "受治理的省份须经审核发布：提交草案，审核人批准，发布人发布。",
    stateLabel: "状态", approvals: "批准数", author: "提案人", open: "打开", impact: "对近期已采纳事件的影响",
    events: "事件数", changed: "变化数", pointsInForce: "现行积分", pointsProposed: "提案积分", reviews: "审核记录",
    reviewer: "审核人", verdict: "结论", counts: "计入", comment: "意见", approve: "批准", reject: "驳回",
    publishProposal: "发布该提案", proposed: "已提交：版本", proposalOf: "提案：版本",
    earliest: "最早生效时间", issues: "问题", yes: "是", no: "否", reviewed: "审核已记录。",
    "state.open": "待审核", "state.rejected": "已驳回", "state.published": "已发布", "state.invalid": "无效",
  },
};

const state = { lang: sessionStorage.getItem("tanhui.lang") || "zh", versions: [], inForce: null, inForceText: "", lastReport: null,
  statementCursor: 0, proposal: null };

function t(key) { return (LABELS[state.lang] && LABELS[state.lang][key]) || LABELS.en[key] || key; }
function $(id) { return document.getElementById(id); }
function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}
function svg(tag, attributes, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}
function applyLabels() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  $("language").textContent = state.lang === "zh" ? "English" : "中文";
}

// ---- session and API ----

function session() {
  const text = sessionStorage.getItem("tanhui.session");
  return text ? JSON.parse(text) : null;
}
async function api(path, options = {}) {
  const current = session();
  const headers = Object.assign({}, options.headers || {});
  if (current) headers.Authorization = "Bearer " + current.key;
  const response = await fetch(path, Object.assign({}, options, { headers, cache: "no-store" }));
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (response.status === 401 && current) { signOut(); }
  return { status: response.status, body, headers: response.headers };
}
function provincePath(rest) { return "/v1/provinces/" + encodeURIComponent(session().province) + rest; }
function problemText(result) {
  if (result.body && typeof result.body === "object") return (result.body.detail || result.body.title || "") + " (" + result.status + ")";
  return "HTTP " + result.status;
}

function signOut() {
  sessionStorage.removeItem("tanhui.session");
  location.hash = "#signin";
  route();
}

// ---- routing ----

function route() {
  const signedIn = session() !== null;
  let page = (location.hash || "#").slice(1) || (signedIn ? "rulesets" : "signin");
  if (!signedIn) page = "signin";
  if (!["signin", "rulesets", "proposals", "dashboard", "ledger"].includes(page)) page = "rulesets";
  for (const section of document.querySelectorAll(".page")) section.hidden = section.id !== "page-" + page;
  $("nav").hidden = !signedIn;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.id === "nav-" + page) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  document.title = "Tanhui · " + t(page === "signin" ? "signIn" : page);
  if (page === "rulesets") loadVersions();
  if (page === "proposals") loadProposals();
  if (page === "dashboard" && !state.lastReport) showReport();
}

// ---- sign-in ----

async function signIn(event) {
  event.preventDefault();
  const province = $("signin-province").value.trim().toUpperCase();
  const key = $("signin-key").value.trim();
  sessionStorage.setItem("tanhui.session", JSON.stringify({ province, key }));
  const result = await api(provincePath("/rulesets"));
  if (result.status !== 200) {
    sessionStorage.removeItem("tanhui.session");
    $("signin-error").textContent = result.status === 401 || result.status === 403 ? t("unauthorized") : problemText(result);
    return;
  }
  $("signin-key").value = "";
  $("signin-error").textContent = "";
  location.hash = "#rulesets";
  route();
}

// ---- rule sets ----

async function loadVersions() {
  const result = await api(provincePath("/rulesets"));
  if (result.status !== 200) return;
  state.versions = result.body.rule_sets.slice().sort((a, b) => a.version - b.version);
  const body = $("versions").tBodies[0];
  body.replaceChildren();
  const select = $("load-version");
  select.replaceChildren();
  const now = Date.now();
  state.inForce = null;
  for (const version of state.versions) {
    if (Date.parse(version.effective_from) <= now) state.inForce = version;
  }
  if (!state.inForce && state.versions.length) state.inForce = state.versions[state.versions.length - 1];
  for (const version of state.versions) {
    body.append(el("tr", { "data-version": version.version }, el("td", {}, version.version), el("td", {}, version.effective_from),
      el("td", { "data-field": "valid_until" }, version.valid_until || "—"), el("td", {}, version.methodology), el("td", {}, version.published_by)));
    select.append(el("option", { value: version.version }, "v" + version.version));
  }
  if (state.inForce) {
    select.value = String(state.inForce.version);
    const stored = await api(provincePath("/rulesets/" + state.inForce.version));
    state.inForceText = stored.status === 200 ? stored.body.document : "";
  } else {
    state.inForceText = "";
  }
  if (!$("editor").value) $("editor").value = state.inForceText;
  editorChanged();
}

async function loadVersion() {
  const version = $("load-version").value;
  if (!version) return;
  const stored = await api(provincePath("/rulesets/" + version));
  if (stored.status === 200) { $("editor").value = stored.body.document; editorChanged(); }
}

function mediaType(text) { return text.trimStart().startsWith("{") ? "application/json" : "application/yaml"; }

let validateTimer = null;
let validateRun = 0;
function editorChanged() {
  updateGutter();
  renderDiff();
  clearTimeout(validateTimer);
  $("validation").textContent = t("checking");
  $("validation").dataset.state = "checking";
  validateTimer = setTimeout(validate, 300);
}

function updateGutter() {
  const lines = $("editor").value.split("\n").length;
  const numbers = [];
  for (let i = 1; i <= lines; i++) numbers.push(i);
  $("gutter").textContent = numbers.join("\n");
  $("gutter").scrollTop = $("editor").scrollTop;
}

async function validate() {
  const run = ++validateRun;
  const text = $("editor").value;
  const result = await api(provincePath("/rulesets/validate"), { method: "POST", headers: { "Content-Type": mediaType(text) }, body: text });
  if (run !== validateRun) return;  // a newer edit is being checked
  const problems = $("problems");
  problems.replaceChildren();
  if (result.status === 200) {
    $("validation").textContent = t("valid") + " " + result.body.version;
    $("validation").className = "ok";
    $("validation").dataset.state = "valid";
    return;
  }
  $("validation").className = "error";
  $("validation").dataset.state = "invalid";
  const errors = (result.body && result.body.errors) || [];
  $("validation").textContent = t("invalid") + ": " + (errors.length || problemText(result));
  for (const problem of errors) {
    const where = problem.line ? t("line") + " " + problem.line + ", " + t("column") + " " + (problem.column || 1) : "";
    const item = el("li", { "data-line": problem.line || "", "data-column": problem.column || "", "data-code": problem.code },
      (where ? where + " — " : "") + (problem.path ? problem.path + ": " : "") + problem.code + ": " + problem.message);
    if (problem.line) {
      const go = el("button", { type: "button", class: "go" }, t("goTo"));
      go.addEventListener("click", () => goTo(problem.line, problem.column || 1));
      item.append(go);
    }
    problems.append(item);
  }
}

function goTo(line, column) {
  const editor = $("editor");
  const lines = editor.value.split("\n");
  let offset = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
  offset += Math.max(0, column - 1);
  editor.focus();
  editor.setSelectionRange(offset, offset);
  showCursor();
}

function showCursor() {
  const editor = $("editor");
  const before = editor.value.slice(0, editor.selectionStart).split("\n");
  $("cursor-position").textContent = t("cursor").replace("L", before.length).replace("C", before[before.length - 1].length + 1);
}

// Line diff by longest common subsequence (rule sets are a few hundred lines; bounded).
function lineDiff(oldText, newText) {
  const a = oldText.split("\n"), b = newText.split("\n");
  if (a.length * b.length > 4000000) return [{ op: "=", text: "(too large to compare)" }];
  const n = a.length, m = b.length;
  const table = Array.from({ length: n + 1 }, () => new Uint16Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) {
    table[i][j] = a[i] === b[j] ? table[i + 1][j + 1] + 1 : Math.max(table[i + 1][j], table[i][j + 1]);
  }
  const out = [];
  let i = 0, j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) { out.push({ op: "=", text: a[i] }); i++; j++; }
    else if (table[i + 1][j] >= table[i][j + 1]) { out.push({ op: "-", text: a[i++] }); }
    else { out.push({ op: "+", text: b[j++] }); }
  }
  while (i < n) out.push({ op: "-", text: a[i++] });
  while (j < m) out.push({ op: "+", text: b[j++] });
  return out;
}

function renderDiff() {
  const pre = $("diff");
  pre.replaceChildren();
  $("diff-base").textContent = state.inForce ? t("base") + " " + state.inForce.version : t("noBase");
  const changes = lineDiff(state.inForceText, $("editor").value).filter((c) => c.op !== "=");
  if (!changes.length) { pre.textContent = t("noDiff"); return; }
  for (const change of changes) {
    pre.append(el("span", { class: change.op === "+" ? "add" : "del" }, change.op + " " + change.text));
  }
}

function parseEvents(text) {
  const trimmed = text.trim();
  if (!trimmed) return [];
  if (trimmed.startsWith("[")) return JSON.parse(trimmed);
  return trimmed.split("\n").filter((line) => line.trim()).map((line) => JSON.parse(line));
}

async function simulate() {
  const out = $("simulation");
  out.replaceChildren();
  let events;
  try { events = parseEvents($("events").value); } catch (error) { out.append(el("p", { class: "error" }, t("badEvents"))); return; }
  if (!events.length) { out.append(el("p", { class: "error" }, t("noEvents"))); return; }
  const result = await api(provincePath("/rulesets/simulate"), {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ document: $("editor").value, events }),
  });
  if (result.status !== 200) { out.append(el("p", { class: "error" }, problemText(result))); return; }
  const table = el("table", { id: "simulation-results" },
    el("thead", {}, el("tr", {}, el("th", {}, t("event")), el("th", {}, "status"), el("th", {}, "code"),
      el("th", { class: "num" }, t("grams")), el("th", { class: "num" }, t("points")))));
  const body = el("tbody");
  for (const line of result.body.results) {
    body.append(el("tr", { "data-status": line.status }, el("td", {}, line.id), el("td", {}, line.status), el("td", {}, line.code || ""),
      el("td", { class: "num" }, line.award ? line.award.grams_co2e : ""), el("td", { class: "num" }, line.award ? line.award.points : "")));
  }
  table.append(body);
  const totals = result.body.totals;
  out.append(table, el("p", { id: "simulation-totals" }, t("totalsLine") + ": " + t("accepted") + " " + totals.accepted + ", " + t("rejected") + " "
    + totals.rejected + ", " + t("invalidItem") + " " + totals.invalid + ", " + t("grams") + " " + totals.grams_co2e + ", " + t("points") + " " + totals.points));
}

// What the confirmation shows, read from the document itself (YAML top-level keys or JSON).
function documentHeader(text) {
  if (mediaType(text) === "application/json") {
    try { const doc = JSON.parse(text); return { version: doc.version, effectiveFrom: doc.effective_from, timezone: doc.timezone }; }
    catch (error) { return {}; }
  }
  const field = (name) => { const match = text.match(new RegExp("^" + name + ":\\s*[\"']?([^\"'\\s#]+)", "m")); return match ? match[1] : undefined; };
  return { version: field("version"), effectiveFrom: field("effective_from"), timezone: field("timezone") };
}

function formatInZone(instant, zone) {
  const date = new Date(instant);
  if (isNaN(date)) return String(instant);
  try {
    return new Intl.DateTimeFormat(state.lang === "zh" ? "zh-CN" : "en-GB", { timeZone: zone, dateStyle: "full", timeStyle: "long" }).format(date)
      + " (" + zone + ")";
  } catch (error) { return date.toISOString(); }
}

function confirmPublish() {
  const header = documentHeader($("editor").value);
  $("publish-summary").textContent = t("summary").replace("P", session().province).replace("V", header.version)
    .replace("T", formatInZone(header.effectiveFrom, header.timezone || "Asia/Shanghai"));
  $("publish-dialog").showModal();
  $("publish-cancel").focus();
}

// Direct publication (a direct-publish province); a governed one goes through propose().
async function publishRuleSet(text) {
  return api(provincePath("/rulesets"), { method: "POST", headers: { "Content-Type": mediaType(text) }, body: text });
}

async function publishConfirmed() {
  $("publish-dialog").close();
  const result = await publishRuleSet($("editor").value);
  if (result.status === 201) {
    $("publish-result").className = "ok";
    $("publish-result").textContent = t("published") + " " + result.body.version + " · " + result.body.content_sha256;
    await loadVersions();
  } else {
    $("publish-result").className = "error";
    $("publish-result").textContent = problemText(result);
  }
}

// ---- proposals (rule-set governance) ----

async function propose() {
  const text = $("editor").value;
  const result = await api(provincePath("/ruleset-proposals"), { method: "POST", headers: { "Content-Type": mediaType(text) }, body: text });
  if (result.status !== 201) {
    $("propose-result").className = "error";
    $("propose-result").textContent = problemText(result);
    return;
  }
  $("propose-result").className = "ok";
  $("propose-result").textContent = t("proposed") + " " + result.body.version + " · " + result.body.id;
  state.proposal = result.body.id;
  location.hash = "#proposals";
}

async function loadProposals() {
  const result = await api(provincePath("/ruleset-proposals"));
  if (result.status !== 200) return;
  const body = $("proposal-list").tBodies[0];
  body.replaceChildren();
  for (const proposal of result.body.proposals) {
    const open = el("button", { type: "button", class: "open-proposal", "data-id": proposal.id }, t("open"));
    open.addEventListener("click", () => openProposal(proposal.id));
    body.append(el("tr", { "data-id": proposal.id, "data-state": proposal.state }, el("td", {}, proposal.version),
      el("td", {}, t("state." + proposal.state)), el("td", {}, proposal.counted_approvals + " / " + proposal.required_approvals),
      el("td", {}, proposal.author), el("td", {}, proposal.effective_from), el("td", {}, open)));
  }
  if (state.proposal) await openProposal(state.proposal);
}

async function openProposal(id) {
  const result = await api(provincePath("/ruleset-proposals/" + encodeURIComponent(id)));
  if (result.status !== 200) { $("proposal-result").className = "error"; $("proposal-result").textContent = problemText(result); return; }
  state.proposal = id;
  renderProposal(result.body);
}

function renderProposal(proposal) {
  $("proposal-detail").hidden = false;
  $("proposal-detail").dataset.id = proposal.id;
  $("proposal-detail").dataset.state = proposal.state;
  $("proposal-detail").dataset.countedApprovals = proposal.counted_approvals;
  $("proposal-title").textContent = t("proposalOf") + " " + proposal.version + " · " + t("state." + proposal.state);
  const facts = $("proposal-facts");
  facts.replaceChildren();
  const fact = (key, value) => facts.append(el("div", {}, el("dt", {}, t(key)), el("dd", { "data-field": key }, value)));
  fact("author", proposal.author);
  fact("approvals", proposal.counted_approvals + " / " + proposal.required_approvals);
  fact("effectiveFrom", formatInZone(proposal.effective_from, documentHeader(proposal.document || "").timezone || "Asia/Shanghai"));
  fact("validUntil", proposal.valid_until || "—");
  if (proposal.earliest_effective_from) fact("earliest", proposal.earliest_effective_from);
  if (proposal.issues.length) fact("issues", proposal.issues.join("; "));
  if (proposal.diff) $("proposal-changes").replaceChildren(...proposal.diff.changes.map((line) => el("li", {}, line)));
  else $("proposal-changes").replaceChildren();
  const impact = $("proposal-impact").tBodies[0];
  impact.replaceChildren();
  for (const kind of (proposal.impact ? proposal.impact.kinds : [])) {
    impact.append(el("tr", { "data-kind": kind.kind }, el("td", {}, kind.kind), el("td", { class: "num" }, kind.events),
      el("td", { class: "num" }, kind.changed), el("td", { class: "num" }, kind.points_in_force), el("td", { class: "num" }, kind.points_proposed)));
  }
  const reviews = $("proposal-reviews").tBodies[0];
  reviews.replaceChildren();
  for (const review of proposal.reviews) {
    reviews.append(el("tr", { "data-verdict": review.verdict, "data-counts": review.counts }, el("td", {}, review.reviewer),
      el("td", {}, t(review.verdict)), el("td", {}, review.counts ? t("yes") : t("no")), el("td", {}, review.comment), el("td", {}, review.created_at)));
  }
  const open = proposal.state === "open";
  for (const id of ["approve-button", "reject-button", "publish-proposal-button"]) $(id).disabled = !open;
}

async function reviewProposal(approve) {
  if (!state.proposal) return;
  const result = await api(provincePath("/ruleset-proposals/" + encodeURIComponent(state.proposal) + (approve ? "/approve" : "/reject")), {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ comment: $("review-comment").value }),
  });
  $("proposal-result").className = result.status === 200 ? "ok" : "error";
  $("proposal-result").textContent = result.status === 200 ? t("reviewed") : problemText(result);
  if (result.status === 200) { $("review-comment").value = ""; await loadProposals(); }
}

async function publishProposal() {
  if (!state.proposal) return;
  const result = await api(provincePath("/ruleset-proposals/" + encodeURIComponent(state.proposal) + "/publish"), { method: "POST" });
  $("proposal-result").className = result.status === 201 ? "ok" : "error";
  $("proposal-result").textContent = result.status === 201 ? t("published") + " " + result.body.version + " · " + result.body.content_sha256 : problemText(result);
  if (result.status === 201) await loadProposals();
}

// ---- dashboard ----

function isoDay(date) {
  const local = new Date(date.getTime() + 8 * 3600 * 1000);  // reports count days in UTC+08:00
  return local.toISOString().slice(0, 10);
}

async function report(groupBy, format) {
  const query = "?from=" + encodeURIComponent($("report-from").value) + "&to=" + encodeURIComponent($("report-to").value)
    + "&group_by=" + encodeURIComponent(groupBy) + (format ? "&format=" + format : "");
  return api(provincePath("/reports" + query));
}

async function showReport(event) {
  if (event) event.preventDefault();
  if (!$("report-from").value) {
    const now = new Date();
    $("report-to").value = isoDay(now);
    $("report-from").value = isoDay(new Date(now.getTime() - 29 * 86400000));
  }
  $("report-error").textContent = "";
  const [byDay, byKind, byDistrict] = await Promise.all([report("day"), report("kind"), report("district")]);
  for (const result of [byDay, byKind, byDistrict]) {
    if (result.status !== 200) { $("report-error").textContent = problemText(result); return; }
  }
  state.lastReport = byDay.body;
  const head = byDay.body.chain_head;
  $("chain-head").textContent = t("chainHead") + " " + head.chain_seq + " (seal " + head.seal_id + ", " + t("hash") + " " + head.hash + ") · "
    + t("threshold").replace("N", byDay.body.suppression_threshold);
  $("chain-head").dataset.chainSeq = head.chain_seq;
  $("chain-head").dataset.hash = head.hash;
  renderTotals(byDay.body.total);
  renderDays(byDay.body.cells);
  renderBars($("chart-kind"), byKind.body.cells, "kind");
  renderBars($("chart-district"), byDistrict.body.cells, "district");
  renderDayChart(byDay.body.cells);
}

function renderTotals(total) {
  const list = $("totals");
  list.replaceChildren();
  const figure = (key, value, field) => list.append(el("div", {}, el("dt", {}, t(key)), el("dd", { "data-field": field }, value)));
  if (total.suppressed) { figure("totalTonnes", t("suppressed"), "suppressed"); return; }
  figure("totalAccepted", total.accepted, "accepted");
  figure("totalRejected", total.rejected, "rejected");
  figure("totalTonnes", (total.grams_co2e / 1e6).toFixed(6), "tonnes");
  figure("totalPoints", total.points, "points");
  figure("totalCitizens", total.citizens, "citizens");
}

function renderDays(cells) {
  const body = $("day-table").tBodies[0];
  body.replaceChildren();
  for (const cell of cells) {
    const value = (field) => el("td", { class: "num", "data-field": field }, cell.suppressed ? t("suppressed") : cell[field]);
    body.append(el("tr", { "data-day": cell.day, "data-suppressed": cell.suppressed }, el("td", {}, cell.day), value("accepted"),
      value("rejected"), value("grams_co2e"), value("points"), value("citizens")));
  }
}

function renderBars(container, cells, dimension) {
  container.replaceChildren();
  const rows = cells.map((cell) => ({ label: cell[dimension] === null ? t("none") : cell[dimension], tonnes: cell.suppressed ? null : cell.grams_co2e / 1e6 }));
  const width = 640, rowHeight = 28, left = 150, height = Math.max(rowHeight, rows.length * rowHeight) + 10;
  const max = Math.max(1e-9, ...rows.map((row) => row.tonnes || 0));
  const chart = svg("svg", { viewBox: "0 0 " + width + " " + height, role: "img", "aria-label": t(dimension === "kind" ? "perKind" : "perDistrict") });
  rows.forEach((row, index) => {
    const y = index * rowHeight + 5;
    chart.append(svg("text", { x: left - 6, y: y + 18, "text-anchor": "end", "font-size": 13, fill: "#1b1f23" }, row.label));
    if (row.tonnes === null) {
      chart.append(svg("text", { x: left, y: y + 18, "font-size": 13, fill: "#57606a" }, t("suppressed")));
      return;
    }
    const barWidth = Math.max(1, (width - left - 120) * row.tonnes / max);
    chart.append(svg("rect", { x: left, y: y + 4, width: barWidth, height: rowHeight - 10, fill: "#1a7f37" }, svg("title", {}, row.label + ": " + row.tonnes.toFixed(6))));
    chart.append(svg("text", { x: left + barWidth + 6, y: y + 18, "font-size": 13, fill: "#1b1f23" }, row.tonnes.toFixed(6)));
  });
  container.append(chart);
}

function renderDayChart(cells) {
  const container = $("chart-day");
  container.replaceChildren();
  const points = cells.filter((cell) => !cell.suppressed);
  const width = 640, height = 240, left = 60, right = 60, top = 15, bottom = 40;
  const chart = svg("svg", { viewBox: "0 0 " + width + " " + height, role: "img", "aria-label": t("perDay") });
  chart.append(svg("line", { x1: left, y1: height - bottom, x2: width - right, y2: height - bottom, stroke: "#d0d7de" }));
  if (!points.length) { container.append(chart); return; }
  const maxTonnes = Math.max(1e-9, ...points.map((c) => c.grams_co2e / 1e6));
  const maxPoints = Math.max(1, ...points.map((c) => c.points));
  const x = (index) => left + (points.length === 1 ? (width - left - right) / 2 : index * (width - left - right) / (points.length - 1));
  const series = (value, max, colour, name) => {
    const path = points.map((cell, index) => (index ? "L" : "M") + x(index).toFixed(1) + " " + (height - bottom - (height - top - bottom) * value(cell) / max).toFixed(1)).join(" ");
    chart.append(svg("path", { d: path, fill: "none", stroke: colour, "stroke-width": 2 }, svg("title", {}, name)));
    points.forEach((cell, index) => chart.append(svg("circle", { cx: x(index), cy: height - bottom - (height - top - bottom) * value(cell) / max, r: 3, fill: colour },
      svg("title", {}, cell.day + " " + name + ": " + value(cell)))));
  };
  series((c) => c.grams_co2e / 1e6, maxTonnes, "#1a7f37", t("tonnes"));
  series((c) => c.points, maxPoints, "#0969da", t("points"));
  chart.append(svg("text", { x: 4, y: top + 4, "font-size": 12, fill: "#1a7f37" }, maxTonnes.toFixed(4) + " t"));
  chart.append(svg("text", { x: width - 4, y: top + 4, "font-size": 12, fill: "#0969da", "text-anchor": "end" }, maxPoints + " " + t("points")));
  points.forEach((cell, index) => {
    if (points.length <= 10 || index % Math.ceil(points.length / 10) === 0) {
      chart.append(svg("text", { x: x(index), y: height - bottom + 16, "font-size": 11, "text-anchor": "middle", fill: "#57606a" }, cell.day.slice(5)));
    }
  });
  container.append(chart);
}

async function downloadCSV() {
  const result = await report("day,kind,district", "csv");
  if (result.status !== 200) { $("report-error").textContent = problemText(result); return; }
  const url = URL.createObjectURL(new Blob([result.body], { type: "text/csv" }));
  const link = el("a", { href: url, download: "tanhui-report-" + session().province + "-" + $("report-from").value + "-" + $("report-to").value + ".csv" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// ---- ledger ----

async function lookUp(event, more) {
  if (event) event.preventDefault();
  const citizen = $("citizen").value.trim().toLowerCase();
  if (!more) { state.statementCursor = 0; $("statement").tBodies[0].replaceChildren(); }
  const result = await api(provincePath("/citizens/" + encodeURIComponent(citizen) + "/statement?limit=20&after_seq=" + state.statementCursor));
  if (result.status !== 200) { $("statement-error").textContent = problemText(result); return; }
  $("statement-error").textContent = "";
  $("balance").textContent = t("balance") + ": " + result.body.balance.points + " " + t("points") + ", " + result.body.balance.grams_co2e + " g CO2e";
  for (const line of result.body.lines) {
    $("statement").tBodies[0].append(el("tr", { "data-seq": line.citizen_seq }, el("td", {}, line.citizen_seq), el("td", {}, line.kind),
      el("td", {}, line.event_id), el("td", { class: "num" }, line.points), el("td", { class: "num" }, line.grams_co2e),
      el("td", {}, line.ruleset_version), el("td", {}, line.created_at), el("td", {}, line.reason || "")));
  }
  state.statementCursor = result.body.next_after_seq;
  $("more-button").hidden = !result.body.has_more;
}

async function reverse(event) {
  event.preventDefault();
  const id = $("reversal-event").value.trim().toLowerCase();
  const result = await api(provincePath("/events/" + encodeURIComponent(id) + "/reversal"), {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ reason: $("reversal-reason").value }),
  });
  $("reversal-result").className = result.status === 201 ? "ok" : "error";
  $("reversal-result").textContent = result.status === 201
    ? t("reversed") + " " + result.body.transaction_id + " (" + result.body.points + " " + t("points") + ", " + result.body.grams_co2e + " g)"
    : problemText(result);
}

// ---- wiring ----

document.addEventListener("DOMContentLoaded", () => {
  applyLabels();
  $("language").addEventListener("click", () => {
    state.lang = state.lang === "zh" ? "en" : "zh";
    sessionStorage.setItem("tanhui.lang", state.lang);
    applyLabels();
  });
  $("signin-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  $("load-button").addEventListener("click", loadVersion);
  $("editor").addEventListener("input", editorChanged);
  $("editor").addEventListener("scroll", () => { $("gutter").scrollTop = $("editor").scrollTop; });
  for (const name of ["keyup", "click"]) $("editor").addEventListener(name, showCursor);
  $("simulate-button").addEventListener("click", simulate);
  $("events-file").addEventListener("change", async () => {
    const file = $("events-file").files[0];
    if (file && file.size <= 4 * 1024 * 1024) $("events").value = await file.text();
  });
  $("publish-button").addEventListener("click", confirmPublish);
  $("propose-button").addEventListener("click", propose);
  $("approve-button").addEventListener("click", () => reviewProposal(true));
  $("reject-button").addEventListener("click", () => reviewProposal(false));
  $("publish-proposal-button").addEventListener("click", publishProposal);
  $("publish-confirm").addEventListener("click", publishConfirmed);
  $("publish-cancel").addEventListener("click", () => $("publish-dialog").close());
  $("report-form").addEventListener("submit", showReport);
  $("csv-button").addEventListener("click", downloadCSV);
  $("statement-form").addEventListener("submit", (event) => lookUp(event, false));
  $("more-button").addEventListener("click", () => lookUp(null, true));
  $("reversal-form").addEventListener("submit", reverse);
  window.addEventListener("hashchange", route);
  route();
});
