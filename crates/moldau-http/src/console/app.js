// Moldau web console: a small single-page app over the broker's REST API (/api/...).
//
// No framework and no build step. Every view is a function that fetches what it needs and
// builds DOM nodes with `h()`; data from the broker only ever reaches the page through
// text nodes and attribute values, never through innerHTML.
//
// Routes (location.hash):
//   #/               cluster overview
//   #/topics         topic list and create-topic form
//   #/topics/<name>  partitions, configs, produce form, record browser
//   #/groups         consumer group list
//   #/groups/<id>    members, committed offsets and lag
// <name> and <id> are encodeURIComponent-encoded.
'use strict';

// ---------------------------------------------------------------------------------------
// REST client

/** An error reply from the API (`{"error": {"code", "name", "message"}}`) or the network. */
class ApiError extends Error {
  constructor(status, name, message, code) {
    super(message);
    this.status = status; // HTTP status, 0 when the request never got an answer
    this.kafkaName = name; // Kafka error name, e.g. TOPIC_ALREADY_EXISTS
    this.code = code; // Kafka error code, undefined when the body carried none
  }
}

/** A mistake in form input, found before anything was sent. */
class InputError extends Error {}

/** Calls the API and returns the parsed JSON body; throws ApiError on any failure. */
async function api(method, path, body) {
  const init = { method, headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'NETWORK_ERROR', `${method} ${path}: ${e.message}`);
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON (a proxy's error page, say); reported below with the raw text.
  }
  if (!res.ok) {
    const err = data && data.error;
    if (err) throw new ApiError(res.status, err.name, err.message, err.code);
    throw new ApiError(res.status, `HTTP_${res.status}`, (text || res.statusText).slice(0, 300));
  }
  if (data === null) throw new ApiError(res.status, 'BAD_RESPONSE', `${method} ${path}: body is not JSON`);
  return data;
}

const enc = encodeURIComponent;
const topicPath = (name) => `/api/topics/${enc(name)}`;
const groupPath = (id) => `/api/groups/${enc(id)}`;
const topicHref = (name) => `#/topics/${enc(name)}`;
const groupHref = (id) => `#/groups/${enc(id)}`;

// ---------------------------------------------------------------------------------------
// DOM helpers

/**
 * Creates an element. `attrs`: `class`, `dataset` (object), `on<event>` (listener),
 * anything else becomes an attribute (true → present, false/null/undefined → absent).
 * Children: nodes, or anything else as a text node; arrays are flattened.
 */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** A table; `rows` are arrays of cell contents (or ready-made <tr>s). */
function table(id, headings, rows, emptyText = 'None.') {
  const body = h('tbody', {}, rows.map((row) => (row instanceof Node ? row : h('tr', {}, row.map((c) => h('td', {}, c))))));
  return h('div', { class: 'table-wrap' },
    h('table', { id }, h('thead', {}, h('tr', {}, headings.map((t) => h('th', {}, t)))), body),
    rows.length === 0 ? h('p', { class: 'empty' }, emptyText) : null);
}

/** A definition list of [label, value] pairs; a value may be [content, id]. */
function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.map(([label, value, id]) => [h('dt', {}, label), h('dd', { id }, value)]));
}

function section(title, ...children) {
  return h('section', {}, h('h2', {}, title), children);
}

/** The visible form of an error: `.error` with the Kafka error name and the message. */
function errorBox(err) {
  const name = err instanceof ApiError ? err.kafkaName : err instanceof InputError ? 'INVALID_INPUT' : err.name;
  return h('div', { class: 'error', role: 'alert' }, h('strong', { class: 'error-name' }, name), ' ', err.message);
}

const dash = '—';
const orDash = (v) => (v === null || v === undefined || v === '' ? dash : v);
const list = (xs) => (xs && xs.length ? xs.join(', ') : dash);
const muted = (text) => h('span', { class: 'muted' }, text);

function isoTime(ms) {
  if (typeof ms !== 'number' || ms < 0) return dash;
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? String(ms) : d.toISOString();
}

/** Parses `key=value` lines (blank lines and `#` comments skipped) into an object. */
function parseKeyValues(text, what) {
  const out = {};
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new InputError(`${what}, line ${i + 1}: expected key=value, got "${line}"`);
    out[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
  });
  return out;
}

/** An optional whole-number field: '' → undefined, otherwise a checked integer. */
function optionalInt(value, what, min = 0) {
  const s = String(value).trim();
  if (s === '') return undefined;
  const n = Number(s);
  if (!Number.isInteger(n) || n < min) throw new InputError(`${what} must be a whole number ≥ ${min}, got "${s}"`);
  return n;
}

/**
 * Wires a form to an async submit handler: disables the submit button while it runs and
 * shows any error in the form's status element (returned); the handler may return a node
 * to show there on success. The handler gets `get(name)`, a control's current value.
 */
function onSubmit(form, handler) {
  const status = h('div', { class: 'form-status', role: 'status' });
  form.append(status);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    status.replaceChildren();
    try {
      const shown = await handler((name) => form.elements.namedItem(name).value);
      if (shown) status.replaceChildren(shown);
    } catch (err) {
      status.replaceChildren(errorBox(err));
      if (!(err instanceof ApiError || err instanceof InputError)) console.error(err);
    } finally {
      button.disabled = false;
    }
  });
  return status;
}

function field(label, control, hint) {
  return h('label', { class: 'field' }, h('span', { class: 'label' }, label), control, hint ? h('small', {}, hint) : null);
}

// ---------------------------------------------------------------------------------------
// Views. Each takes the element to fill and the route's parameters.

async function viewOverview(el) {
  const [cluster, topics, groups] = await Promise.all([
    api('GET', '/api/cluster'), api('GET', '/api/topics'), api('GET', '/api/groups'),
  ]);
  const brokers = [...cluster.brokers].sort((a, b) => a.node_id - b.node_id);
  el.append(
    h('h1', {}, 'Cluster'),
    facts([
      ['Cluster id', h('code', {}, cluster.cluster_id), 'cluster-id'],
      ['Controller', orDash(cluster.controller_id), 'controller-id'],
      ['Metadata quorum', cluster.quorum
        ? `leader ${cluster.quorum.leader_id}, epoch ${cluster.quorum.leader_epoch}, committed offset ${cluster.quorum.high_watermark}, voters `
          + cluster.quorum.voters.map((v) => `${v.node_id} (lag ${v.log_end_offset < 0 ? '?' : Math.max(0, cluster.quorum.high_watermark - v.log_end_offset)})`).join(', ')
        : 'no active controller answered', 'quorum'],
      ['Topics', h('a', { href: '#/topics' }, topics.topics.length), 'topic-count'],
      ['Consumer groups', h('a', { href: '#/groups' }, groups.groups.length), 'group-count'],
    ]),
    section('Brokers', table('brokers-table', ['Node id', 'Host', 'Port', 'Rack', 'Status'],
      brokers.map((b) => [
        b.node_id === cluster.controller_id ? [b.node_id, ' ', muted('(controller)')] : b.node_id,
        b.host, b.port, orDash(b.rack), b.status || 'live',
      ]))),
  );
}

async function viewTopics(el) {
  const { topics } = await api('GET', '/api/topics');
  topics.sort((a, b) => a.name.localeCompare(b.name));
  el.append(
    h('h1', {}, 'Topics'),
    table('topics-table', ['Name', 'Partitions', 'Internal'],
      topics.map((t) => [h('a', { href: topicHref(t.name) }, t.name), t.partitions, t.internal ? 'yes' : 'no']),
      'No topics yet.'),
    section('Create a topic', createTopicForm()),
  );
}

function createTopicForm() {
  const form = h('form', { id: 'create-topic-form', class: 'card', autocomplete: 'off' },
    h('div', { class: 'row' },
      field('Name', h('input', { name: 'name', required: true, maxlength: 249 })),
      field('Partitions', h('input', { name: 'partitions', type: 'number', min: 1, placeholder: 'broker default' })),
      field('Replication factor', h('input', { name: 'replication_factor', type: 'number', min: 1, placeholder: 'broker default' }))),
    field('Configs', h('textarea', { name: 'configs', rows: 3, placeholder: 'cleanup.policy=compact\nretention.ms=86400000' }),
      'Optional, one key=value per line.'),
    h('button', { type: 'submit' }, 'Create topic'));
  onSubmit(form, async (get) => {
    const body = { name: get('name').trim() };
    const partitions = optionalInt(get('partitions'), 'Partitions', 1);
    const replicationFactor = optionalInt(get('replication_factor'), 'Replication factor', 1);
    const configs = parseKeyValues(get('configs'), 'Configs');
    if (partitions !== undefined) body.partitions = partitions;
    if (replicationFactor !== undefined) body.replication_factor = replicationFactor;
    if (Object.keys(configs).length) body.configs = configs;
    const created = await api('POST', '/api/topics', body);
    location.hash = topicHref(created.name || body.name);
  });
  return form;
}

async function viewTopic(el, name) {
  const topic = await api('GET', topicPath(name));
  const partitions = [...topic.partitions].sort((a, b) => a.partition - b.partition);
  const configs = Object.entries(topic.configs || {}).sort(([a], [b]) => a.localeCompare(b));
  const browser = recordBrowser(topic.name, partitions);
  const deleteButton = h('button', { type: 'button', class: 'danger', id: 'delete-topic' }, 'Delete topic');
  const deleteStatus = h('div', { class: 'form-status' });
  deleteButton.addEventListener('click', async () => {
    if (!window.confirm(`Delete topic "${topic.name}" and all its records?`)) return;
    try {
      await api('DELETE', topicPath(topic.name));
      location.hash = '#/topics';
    } catch (err) {
      deleteStatus.replaceChildren(errorBox(err));
    }
  });
  el.append(
    h('h1', {}, 'Topic ', h('code', { id: 'topic-name' }, topic.name)),
    facts([
      ['Partitions', partitions.length],
      ['Internal', topic.internal ? 'yes' : 'no'],
      ['Records', partitions.reduce((n, p) => n + Math.max(0, p.high_watermark - p.log_start_offset), 0)],
    ]),
    section('Partitions', table('partitions-table',
      ['Partition', 'Leader', 'Replicas', 'ISR', 'Status', 'Log start offset', 'High watermark', 'Last stable offset'],
      partitions.map((p) => [p.partition, p.leader < 0 ? 'none' : p.leader, list(p.replicas), list(p.isr),
        p.offline ? 'offline' : (p.under_replicated ? 'under-replicated' : 'ok'),
        p.log_start_offset, p.high_watermark, orDash(p.last_stable_offset)]))),
    section('Configuration', table('configs-table', ['Name', 'Value'],
      configs.map(([k, v]) => [h('code', {}, k), orDash(v)]))),
    section('Produce a record', produceForm(topic.name, partitions, browser)),
    section('Records', browser.el),
    h('p', { class: 'actions' }, deleteButton, deleteStatus),
  );
  await browser.load();
}

function partitionOptions(partitions, anyLabel) {
  return [
    anyLabel ? h('option', { value: '' }, anyLabel) : null,
    partitions.map((p) => h('option', { value: p.partition }, p.partition)),
  ];
}

function produceForm(topic, partitions, browser) {
  const form = h('form', { id: 'produce-form', class: 'card', autocomplete: 'off' },
    h('div', { class: 'row' },
      field('Partition', h('select', { name: 'partition' }, partitionOptions(partitions, 'any (by key)'))),
      field('Key', h('input', { name: 'key', placeholder: 'none' }))),
    field('Value', h('textarea', { name: 'value', rows: 4, placeholder: '{"hello": "world"}' })),
    field('Headers', h('textarea', { name: 'headers', rows: 2, placeholder: 'trace-id=abc123' }),
      'Optional, one key=value per line.'),
    h('button', { type: 'submit' }, 'Produce'));
  onSubmit(form, async (get) => {
    const partition = get('partition') === '' ? null : Number(get('partition'));
    const record = {
      key: get('key') === '' ? null : get('key'),
      value: get('value'),
      headers: parseKeyValues(get('headers'), 'Headers'),
      partition,
    };
    const res = await api('POST', `${topicPath(topic)}/records`, { records: [record], encoding: 'utf8' });
    const written = res.offsets[0];
    // Show the new record: the current query on its partition, or the latest records when
    // the new offset falls outside the current query's range.
    const shown = await browser.load(written.partition);
    if (shown && !shown.some((r) => r.offset === written.offset)) await browser.latest();
    return h('p', { class: 'ok', id: 'produce-result' },
      `Written to partition ${written.partition} at offset ${written.offset}.`);
  });
  return form;
}

// The record browser's last query per topic, so Refresh and revisits keep it.
const browseState = new Map();

/**
 * The record browser of one topic: a query form and a results table. `load(partition)`
 * re-runs the current query, first switching to `partition` when given, and returns the
 * records shown (null on error); `latest()` switches to the "latest" mode and loads.
 */
function recordBrowser(topic, partitions) {
  // Start on the first partition that holds records (an empty partition 0 would show
  // nothing on a topic that has data).
  const first = partitions.find((p) => (p.high_watermark ?? 0) > (p.log_start_offset ?? 0)) || partitions[0];
  const saved = browseState.get(topic) || {
    partition: first ? String(first.partition) : '0',
    mode: 'offset',
    offset: String(first ? first.log_start_offset ?? 0 : 0),
    timestamp: '',
    limit: '50',
    encoding: 'utf8',
  };
  const modeSelect = h('select', { name: 'mode' },
    h('option', { value: 'offset' }, 'from offset'),
    h('option', { value: 'timestamp' }, 'from timestamp'),
    h('option', { value: 'latest' }, 'latest'));
  const offsetField = field('Offset', h('input', { name: 'offset', type: 'number', min: 0 }));
  const timestampField = field('Timestamp (local time)', h('input', { name: 'timestamp', type: 'datetime-local', step: 1 }));
  const form = h('form', { id: 'browse-form', class: 'card row', autocomplete: 'off' },
    field('Partition', h('select', { name: 'partition' }, partitionOptions(partitions))),
    field('Mode', modeSelect),
    offsetField,
    timestampField,
    field('Limit', h('input', { name: 'limit', type: 'number', min: 1, max: 1000 })),
    field('Encoding', h('select', { name: 'encoding' },
      h('option', { value: 'utf8' }, 'UTF-8'), h('option', { value: 'base64' }, 'base64'))),
    h('button', { type: 'submit' }, 'Show records'));
  for (const [name, value] of Object.entries(saved)) form.elements[name].value = value;
  if (form.elements.partition.selectedIndex < 0) form.elements.partition.selectedIndex = 0;
  const showModeFields = () => {
    offsetField.hidden = modeSelect.value !== 'offset';
    timestampField.hidden = modeSelect.value !== 'timestamp';
  };
  modeSelect.addEventListener('change', showModeFields);
  showModeFields();

  const results = h('div', { class: 'records' });
  const status = onSubmit(form, () => load());

  /** Builds the query string from the form; throws InputError on bad input. */
  function query() {
    const f = form.elements;
    const params = new URLSearchParams({ partition: f.partition.value });
    const limit = optionalInt(f.limit.value, 'Limit', 1) ?? 50;
    if (f.mode.value === 'latest') {
      params.set('latest', limit);
    } else if (f.mode.value === 'timestamp') {
      const ms = new Date(f.timestamp.value).getTime(); // datetime-local is local time
      if (!f.timestamp.value || Number.isNaN(ms)) throw new InputError('Choose a timestamp.');
      params.set('timestamp', ms);
      params.set('limit', limit);
    } else {
      params.set('offset', optionalInt(f.offset.value, 'Offset') ?? 0);
      params.set('limit', limit);
    }
    if (f.encoding.value !== 'utf8') params.set('encoding', f.encoding.value);
    return params;
  }

  async function load(partition) {
    if (partition !== undefined) form.elements.partition.value = String(partition);
    const f = form.elements;
    browseState.set(topic, Object.fromEntries(Object.keys(saved).map((k) => [k, f[k].value])));
    status.replaceChildren();
    let res;
    try {
      res = await api('GET', `${topicPath(topic)}/records?${query()}`);
    } catch (err) {
      results.replaceChildren();
      status.replaceChildren(errorBox(err));
      return null;
    }
    results.replaceChildren(recordsTable(res.records),
      h('p', { class: 'muted', id: 'records-summary' },
        `${res.records.length} record(s). High watermark ${res.high_watermark}, next offset ${res.next_offset}. `,
        res.next_offset < res.high_watermark
          ? h('button', { type: 'button', class: 'link', id: 'records-next', onclick: () => nextPage(res.next_offset) }, 'Next page →')
          : null));
    return res.records;
  }

  function nextPage(offset) {
    modeSelect.value = 'offset';
    showModeFields();
    form.elements.offset.value = String(offset);
    return load();
  }

  function latest() {
    modeSelect.value = 'latest';
    showModeFields();
    return load();
  }

  return { el: h('div', {}, form, results), load, latest };
}

function recordsTable(records) {
  const rows = records.map((r) => h('tr', { dataset: { offset: r.offset, partition: r.partition } },
    h('td', {}, r.partition),
    h('td', {}, r.offset),
    h('td', { class: 'nowrap' }, isoTime(r.timestamp)),
    h('td', { class: 'key' }, r.key === null || r.key === undefined ? muted('null') : r.key),
    h('td', { class: 'value' }, renderValue(r.value)),
    h('td', { class: 'headers' }, renderHeaders(r.headers))));
  return table('records-table', ['Partition', 'Offset', 'Timestamp', 'Key', 'Value', 'Headers'], rows,
    'No records in this range.');
}

/** A record value: JSON objects and arrays pretty-printed in a <pre>, other text as is. */
function renderValue(value) {
  if (value === null || value === undefined) return muted('null');
  const text = String(value);
  const trimmed = text.trimStart();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    try {
      return h('pre', { class: 'json' }, JSON.stringify(JSON.parse(text), null, 2));
    } catch {
      // Not JSON after all; shown as text below.
    }
  }
  return h('span', { class: 'text' }, text);
}

function renderHeaders(headers) {
  if (!headers || headers.length === 0) return muted(dash);
  return h('ul', { class: 'plain' }, headers.map((hd) =>
    h('li', {}, h('code', {}, hd.value === null || hd.value === undefined ? hd.key : `${hd.key}=${hd.value}`))));
}

async function viewGroups(el) {
  const { groups } = await api('GET', '/api/groups');
  groups.sort((a, b) => a.group_id.localeCompare(b.group_id));
  el.append(
    h('h1', {}, 'Consumer groups'),
    table('groups-table', ['Group id', 'State', 'Protocol type'],
      groups.map((g) => [h('a', { href: groupHref(g.group_id) }, g.group_id), orDash(g.state), orDash(g.protocol_type)]),
      'No consumer groups.'),
  );
}

async function viewGroup(el, id) {
  const group = await api('GET', groupPath(id));
  const members = [...(group.members || [])].sort((a, b) => a.member_id.localeCompare(b.member_id));
  const offsets = [...(group.offsets || [])].sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition);
  el.append(
    h('h1', {}, 'Group ', h('code', { id: 'group-id' }, group.group_id)),
    facts([
      ['State', orDash(group.state), 'group-state'],
      ['Protocol type', orDash(group.protocol_type)],
      ['Protocol', orDash(group.protocol)],
      ['Total lag', orDash(group.total_lag), 'group-total-lag'],
    ]),
    section('Members', table('members-table', ['Member id', 'Client id', 'Host', 'Assignments'],
      members.map((m) => [h('code', {}, m.member_id), m.client_id, m.client_host, renderAssignments(m.assignments)]),
      'No active members.')),
    section('Committed offsets', table('offsets-table', ['Topic', 'Partition', 'Committed offset', 'High watermark', 'Lag'],
      offsets.map((o) => [h('a', { href: topicHref(o.topic) }, o.topic), o.partition,
        orDash(o.committed_offset), orDash(o.high_watermark), orDash(o.lag)]),
      'No committed offsets.')),
  );
}

function renderAssignments(assignments) {
  if (!assignments || assignments.length === 0) return muted(dash);
  return h('ul', { class: 'plain' }, assignments.map((a) =>
    h('li', {}, h('a', { href: topicHref(a.topic) }, a.topic), `: ${list(a.partitions)}`)));
}

// ---------------------------------------------------------------------------------------
// Router

const routes = [
  { pattern: /^\/?$/, nav: 'overview', title: 'Overview', view: viewOverview },
  { pattern: /^\/topics\/?$/, nav: 'topics', title: 'Topics', view: viewTopics },
  { pattern: /^\/topics\/([^/]+)$/, nav: 'topics', title: 'Topic', view: viewTopic },
  { pattern: /^\/groups\/?$/, nav: 'groups', title: 'Groups', view: viewGroups },
  { pattern: /^\/groups\/([^/]+)$/, nav: 'groups', title: 'Group', view: viewGroup },
];

function notFound(el, path) {
  el.append(h('h1', {}, 'Not found'), h('p', {}, 'No page at ', h('code', {}, `#${path}`), '. ', h('a', { href: '#/' }, 'Go to the overview.')));
}

/**
 * Renders the route in location.hash into a fresh container. A view still loading when
 * the user navigates on keeps writing into its old, detached container, so a late answer
 * can never overwrite the newer page.
 */
async function render() {
  const path = location.hash.replace(/^#/, '') || '/';
  const route = routes.find((r) => r.pattern.test(path));
  for (const a of document.querySelectorAll('nav a')) {
    if (route && a.dataset.nav === route.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const container = h('div', { class: 'page', 'aria-busy': 'true' });
  const loading = h('p', { class: 'muted loading' }, 'Loading…');
  container.append(loading);
  document.getElementById('view').replaceChildren(container);
  try {
    if (!route) {
      document.title = 'Not found · Moldau';
      notFound(container, path);
    } else {
      const params = route.pattern.exec(path).slice(1).map(decodeURIComponent);
      document.title = `${[route.title, ...params].join(' ')} · Moldau`;
      await route.view(container, ...params);
    }
  } catch (err) {
    container.append(errorBox(err));
    if (!(err instanceof ApiError)) console.error(err);
  } finally {
    loading.remove();
    container.removeAttribute('aria-busy');
  }
}

window.addEventListener('hashchange', render);
document.getElementById('refresh').addEventListener('click', render);
render();
