/**
 * The status page: an MQTT client of the broker that served it (the same listener, over
 * WebSocket), so what it shows is what the broker's ACL lets this user read. Query parameters:
 * `prefix=a/b` (repeatable) for agents whose topic prefix has more than one level, and
 * `readings=FILTER` (repeatable) for readings outside PREFIX/DEVICE/SENSOR.
 */
import { sparkPath } from './chart.ts';
import { chartStart, type Device, Model, type RATE_COUNTERS, unitText } from './model.ts';
import { type LinkState, MqttLink } from './mqtt-ws.ts';

const CHART_W = 240;
const CHART_H = 36;
/** Rendering waits at least this long after the last one (readings can come in bursts). */
const RENDER_GAP_MS = 200;

const model = new Model();
const params = new URLSearchParams(location.search);
let link: MqttLink | null = null;
let credentials: { username: string; password: string } | undefined;

function byId<T extends HTMLElement>(id: string): T {
  return document.getElementById(id) as T;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  cls?: string,
  text?: string,
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls !== undefined) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function setText(node: Node, text: string): void {
  if (node.textContent !== text) node.textContent = text;
}

function fmt(n: number | undefined, digits = 1): string {
  if (n === undefined || !Number.isFinite(n)) return '–';
  if (Math.abs(n) >= 1e6) return `${(n / 1e6).toFixed(digits)} M`;
  if (Math.abs(n) >= 1e4) return `${(n / 1e3).toFixed(digits)} k`;
  return Number.isInteger(n) ? String(n) : n.toFixed(digits);
}

function bytes(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '–';
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${Math.round(n)} B`;
}

function ago(ms: number): string {
  if (ms < 1500) return 'now';
  if (ms < 90_000) return `${Math.round(ms / 1000)} s ago`;
  if (ms < 5_400_000) return `${Math.round(ms / 60_000)} min ago`;
  return `${(ms / 3_600_000).toFixed(1)} h ago`;
}

function value(v: number | string | boolean | undefined): string {
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : String(Math.round(v * 100) / 100);
  return v === undefined ? '–' : String(v);
}

// ---- the connection --------------------------------------------------------------------

function wsUrl(): string {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/mqtt`;
}

function clientId(): string {
  const b = new Uint8Array(6);
  crypto.getRandomValues(b);
  return `status-${Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')}`;
}

function prefixFilters(p: string): string[] {
  return [`${p}/_agent/+/status`, `${p}/_agent/+/health`, `${p}/+/+`];
}

function connect(): void {
  link?.stop();
  const c = credentials;
  link = new MqttLink(
    wsUrl(),
    c === undefined
      ? { clientId: clientId() }
      : { clientId: clientId(), username: c.username, password: c.password },
    { state: onState, message: onMessage, suback: onSuback },
  );
  const filters = ['$SYS/broker/#', '+/_agent/+/status', '+/_agent/+/health', ...params.getAll('readings')];
  for (const p of model.prefixes) filters.push(...prefixFilters(p));
  link.subscribe(filters);
  link.start();
}

model.onPrefix = (p) => link?.subscribe([`${p}/+/+`]);
for (const p of params.getAll('prefix'))
  if (p !== '' && !p.includes('+') && !p.includes('#')) model.prefixes.add(p);

function onState(state: LinkState, detail: string): void {
  const badge = byId('conn');
  badge.dataset.state = state;
  setText(badge, state === 'refused' ? 'login needed' : state);
  const form = byId<HTMLFormElement>('login');
  if (state === 'refused') {
    form.hidden = false;
    setText(byId('login-error'), credentials === undefined ? '' : detail);
    byId<HTMLInputElement>('username').focus();
  } else if (state === 'connected') {
    form.hidden = true;
    setText(byId('who'), credentials === undefined ? '' : credentials.username);
    document.body.dataset.connectedAt = String(Math.round(performance.now()));
  }
}

function onMessage(topic: string, payload: Uint8Array): void {
  const before = model.readings;
  if (!model.message(topic, payload, Date.now())) return;
  if (before === 0 && model.readings > 0) render();
  else schedule();
}

function onSuback(filters: string[], codes: number[]): void {
  filters.forEach((f, i) => {
    if ((codes[i] ?? 0x80) >= 0x80) model.refused.add(f);
    else model.refused.delete(f);
  });
  schedule();
}

byId<HTMLFormElement>('login').addEventListener('submit', (e) => {
  e.preventDefault();
  const form = e.target as HTMLFormElement;
  const data = new FormData(form);
  credentials = {
    username: String(data.get('username') ?? ''),
    password: String(data.get('password') ?? ''),
  };
  setText(byId('login-error'), '');
  document.body.dataset.loginAt = String(Math.round(performance.now()));
  connect();
});

// ---- rendering -------------------------------------------------------------------------

let timer: ReturnType<typeof setTimeout> | undefined;
let lastRender = 0;

function schedule(): void {
  if (timer !== undefined) return;
  timer = setTimeout(render, Math.max(0, lastRender + RENDER_GAP_MS - performance.now()));
}

function render(): void {
  clearTimeout(timer);
  timer = undefined;
  lastRender = performance.now();
  const now = Date.now();
  renderBroker();
  renderAgents(now);
  renderDevices(now);
  const refused = [...model.refused];
  setText(byId('refused'), refused.length === 0 ? '' : `Not allowed to read (ACL): ${refused.join(', ')}`);
  if (model.readings > 0 && document.body.dataset.firstReading === undefined)
    document.body.dataset.firstReading = String(Math.round(performance.now()));
}

const statCells = new Map<string, HTMLElement>();

function stat(parent: HTMLElement, label: string, text: string): void {
  let cell = statCells.get(label);
  if (cell === undefined) {
    const box = el('div', 'stat');
    box.append(el('dt', undefined, label));
    cell = el('dd');
    box.append(cell);
    box.dataset.stat = label;
    parent.append(box);
    statCells.set(label, cell);
  }
  setText(cell, text);
}

function renderBroker(): void {
  const b = model.broker;
  const dl = byId('broker-stats');
  const rate = (name: (typeof RATE_COUNTERS)[number]) => model.rate(name);
  stat(dl, 'version', b.get('version') ?? '–');
  stat(dl, 'uptime', b.get('uptime') ?? '–');
  stat(dl, 'clients', b.get('clients/connected') ?? '–');
  stat(dl, 'subscriptions', b.get('subscriptions/count') ?? '–');
  stat(dl, 'retained', b.get('retained messages/count') ?? '–');
  stat(dl, 'messages in/s', fmt(rate('publish/messages/received')));
  stat(dl, 'messages out/s', fmt(rate('publish/messages/sent')));
  stat(dl, 'dropped', `${b.get('messages/dropped') ?? '–'} (${fmt(rate('messages/dropped'))}/s)`);
  stat(dl, 'bytes in/s', bytes(rate('bytes/received')));
  stat(dl, 'bytes out/s', bytes(rate('bytes/sent')));
  // Mosquitto's store count holds the retained messages too; queued is the rest.
  const stored = b.get('store/messages/count');
  const retained = b.get('retained messages/count');
  stat(
    dl,
    'queued',
    stored === undefined || retained === undefined
      ? '–'
      : String(Math.max(0, Number(stored) - Number(retained))),
  );
  const table = byId('bridges');
  table.hidden = model.bridges.size === 0;
  const body = table.querySelector('tbody') as HTMLElement;
  const rows: HTMLElement[] = [];
  for (const br of model.bridges.values()) {
    const v = br.values;
    const up = v.get('state');
    const state = v.get('bridge_state') ?? (up === '1' ? 'connected' : up === '0' ? 'down' : '–');
    const tr = el('tr');
    tr.dataset.bridge = br.name;
    tr.dataset.state = state;
    for (const text of [
      br.name,
      state,
      v.get('messages/queued') ?? '–',
      v.get('messages/sent') ?? '–',
      v.get('messages/received') ?? '–',
      v.get('messages/dropped') ?? '–',
      v.get('last_error') ?? '',
    ])
      tr.append(el('td', undefined, text));
    rows.push(tr);
  }
  body.replaceChildren(...rows);
}

function renderAgents(now: number): void {
  const box = byId('agents');
  const cards: HTMLElement[] = [];
  for (const a of model.agents.values()) {
    const card = el('article', 'card');
    card.dataset.agent = a.id;
    const state = a.online === true ? 'online' : a.online === false ? 'offline' : 'unknown';
    card.dataset.state = state;
    const head = el('header');
    head.append(el('h3', undefined, a.id), el('span', `badge ${state}`, state));
    card.append(head);
    const h = a.health;
    const q = h?.queue;
    const dl = el('dl');
    const row = (k: string, v: string) => {
      const d = el('div', 'stat');
      d.dataset.stat = k;
      d.append(el('dt', undefined, k), el('dd', undefined, v));
      dl.append(d);
    };
    row('prefix', a.prefix);
    row('queue on disk', q === undefined ? '–' : `${q.count ?? '–'} (${bytes(q.bytes)})`);
    row('oldest queued', q?.oldestAgeMs === undefined ? '–' : ago(q.oldestAgeMs).replace(' ago', ''));
    row('framing errors', fmt(h?.counters?.framingErrors));
    row('reconnects', fmt(h?.reconnects));
    row('health', a.healthAt === 0 ? 'none yet' : ago(now - a.healthAt));
    if (q?.failed === true) row('disk', 'NOT WRITABLE');
    card.append(dl);
    cards.push(card);
  }
  box.replaceChildren(...cards);
  setText(byId('agents-empty'), model.agents.size === 0 ? 'No agent seen yet.' : '');
}

interface DeviceView {
  card: HTMLElement;
  badge: HTMLElement;
  stats: HTMLElement;
  rows: HTMLElement;
  channels: Map<
    string,
    { row: HTMLElement; value: HTMLElement; age: HTMLElement; path: SVGPathElement; range: HTMLElement }
  >;
}

const deviceViews = new Map<string, DeviceView>();
const SVG = 'http://www.w3.org/2000/svg';

function deviceView(d: Device): DeviceView {
  let v = deviceViews.get(d.key);
  if (v !== undefined) return v;
  const card = el('article', 'card device');
  card.dataset.device = d.name;
  const head = el('header');
  const badge = el('span', 'badge');
  head.append(el('h3', undefined, d.name), badge);
  const stats = el('p', 'meta');
  const table = el('table', 'channels');
  const rows = el('tbody');
  table.append(rows);
  card.append(head, stats, table);
  v = { card, badge, stats, rows, channels: new Map() };
  deviceViews.set(d.key, v);
  return v;
}

function renderDevices(now: number): void {
  const box = byId('devices');
  const cards: HTMLElement[] = [];
  const keys = [...model.devices.keys()].sort();
  for (const key of keys) {
    const d = model.devices.get(key) as Device;
    const v = deviceView(d);
    const state = d.online === true ? 'online' : d.online === false ? 'offline' : 'unknown';
    v.card.dataset.state = state;
    v.badge.className = `badge ${state}`;
    setText(v.badge, state);
    const parts = [`${fmt(model.readingRate(d, now), 1)} readings/s`];
    if (d.framingErrors !== undefined) parts.push(`${d.framingErrors} framing errors`);
    if (d.agent !== undefined)
      parts.push(`agent ${d.agent}${d.port === undefined ? '' : `, port ${d.port}`}`);
    parts.push(d.prefix);
    setText(v.stats, parts.join(' · '));
    for (const c of d.channels.values()) {
      let cv = v.channels.get(c.sensor);
      if (cv === undefined) {
        const row = el('tr');
        row.dataset.channel = c.sensor;
        const valueCell = el('td', 'v');
        const age = el('td', 'age');
        const chartCell = el('td', 'chart');
        const svg = document.createElementNS(SVG, 'svg');
        svg.setAttribute('viewBox', `0 0 ${CHART_W} ${CHART_H}`);
        svg.setAttribute('preserveAspectRatio', 'none');
        const path = document.createElementNS(SVG, 'path');
        svg.append(path);
        const range = el('span', 'range');
        chartCell.append(svg, range);
        row.append(el('th', undefined, c.sensor), valueCell, age, chartCell);
        v.rows.append(row);
        cv = { row, value: valueCell, age, path, range };
        v.channels.set(c.sensor, cv);
      }
      setText(cv.value, `${value(c.value)} ${unitText(c.unit)}`.trim());
      setText(cv.age, ago(now - c.at));
      const t0 = chartStart(c.series, now);
      const spark = sparkPath(c.series.since(t0), t0, now, CHART_W, CHART_H);
      cv.path.setAttribute('d', spark.d);
      setText(cv.range, spark.d === '' ? '' : `${value(spark.min)} – ${value(spark.max)}`);
    }
    cards.push(v.card);
  }
  if (box.children.length !== cards.length || cards.some((c, i) => box.children[i] !== c))
    box.replaceChildren(...cards);
  setText(byId('devices-empty'), model.devices.size === 0 ? 'No device seen yet.' : '');
}

// Ages, rates and charts move on without messages.
setInterval(render, 1000);
render();
connect();
