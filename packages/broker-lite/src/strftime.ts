/**
 * Mosquitto's `log_timestamp_format`: a strftime(3) format, in local time as Mosquitto writes it
 * (the process's TZ). The conversions are those of the C locale; a format is compiled once into
 * a list of parts, so a log line costs a few string concatenations.
 */

const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = [
  'January',
  'February',
  'March',
  'April',
  'May',
  'June',
  'July',
  'August',
  'September',
  'October',
  'November',
  'December',
];

type Part = string | ((d: Date) => string);

const pad2 = (n: number): string => (n < 10 ? `0${n}` : String(n));
const space2 = (n: number): string => (n < 10 ? ` ${n}` : String(n));
const pad3 = (n: number): string => String(n).padStart(3, '0');
const hour12 = (d: Date): number => d.getHours() % 12 || 12;

function dayOfYear(d: Date): number {
  const start = Date.UTC(d.getFullYear(), 0, 1);
  return Math.round((Date.UTC(d.getFullYear(), d.getMonth(), d.getDate()) - start) / 86_400_000) + 1;
}

/** ISO 8601 week-based year and week number (%G, %V). */
function isoWeek(d: Date): { year: number; week: number } {
  const day = new Date(Date.UTC(d.getFullYear(), d.getMonth(), d.getDate()));
  const dow = day.getUTCDay() || 7;
  day.setUTCDate(day.getUTCDate() + 4 - dow);
  const year = day.getUTCFullYear();
  const week = Math.ceil(((day.getTime() - Date.UTC(year, 0, 1)) / 86_400_000 + 1) / 7);
  return { year, week };
}

/** Week of the year, weeks starting on `first` (0 Sunday: %U; 1 Monday: %W). */
function weekOfYear(d: Date, first: number): number {
  const wday = (d.getDay() + 7 - first) % 7;
  return Math.floor((dayOfYear(d) - 1 - wday + 7) / 7);
}

function offset(d: Date): string {
  const m = -d.getTimezoneOffset();
  const a = Math.abs(m);
  return `${m < 0 ? '-' : '+'}${pad2(Math.floor(a / 60))}${pad2(a % 60)}`;
}

// Intl takes the zone when made: made again if TZ changed. Names are Intl's (`UTC`, `EST`, but
// `GMT+1` where the C library writes `CET`): Node has no tzdata abbreviations of its own.
let zoneFormat: { tz: string | undefined; format: Intl.DateTimeFormat } | undefined;
function zoneName(d: Date): string {
  const tz = process.env.TZ;
  if (zoneFormat === undefined || zoneFormat.tz !== tz)
    zoneFormat = { tz, format: new Intl.DateTimeFormat('en-US', { timeZoneName: 'short' }) };
  return zoneFormat.format.formatToParts(d).find((p) => p.type === 'timeZoneName')?.value ?? '';
}

/** The conversions, by letter. Composite ones (%c, %D, %F, %r, %R, %T, %x, %X) are expanded. */
const CONVERSIONS: Record<string, (d: Date) => string> = {
  a: (d) => DAYS[d.getDay()].slice(0, 3),
  A: (d) => DAYS[d.getDay()],
  b: (d) => MONTHS[d.getMonth()].slice(0, 3),
  h: (d) => MONTHS[d.getMonth()].slice(0, 3),
  B: (d) => MONTHS[d.getMonth()],
  C: (d) => pad2(Math.floor(d.getFullYear() / 100)),
  d: (d) => pad2(d.getDate()),
  e: (d) => space2(d.getDate()),
  g: (d) => pad2(isoWeek(d).year % 100),
  G: (d) => String(isoWeek(d).year),
  H: (d) => pad2(d.getHours()),
  I: (d) => pad2(hour12(d)),
  j: (d) => pad3(dayOfYear(d)),
  k: (d) => space2(d.getHours()),
  l: (d) => space2(hour12(d)),
  m: (d) => pad2(d.getMonth() + 1),
  M: (d) => pad2(d.getMinutes()),
  n: () => '\n',
  p: (d) => (d.getHours() < 12 ? 'AM' : 'PM'),
  P: (d) => (d.getHours() < 12 ? 'am' : 'pm'),
  s: (d) => String(Math.floor(d.getTime() / 1000)),
  S: (d) => pad2(d.getSeconds()),
  t: () => '\t',
  u: (d) => String(d.getDay() || 7),
  U: (d) => pad2(weekOfYear(d, 0)),
  V: (d) => pad2(isoWeek(d).week),
  w: (d) => String(d.getDay()),
  W: (d) => pad2(weekOfYear(d, 1)),
  y: (d) => pad2(d.getFullYear() % 100),
  Y: (d) => String(d.getFullYear()),
  z: offset,
  Z: zoneName,
  '%': () => '%',
};

const COMPOSITE: Record<string, string> = {
  c: '%a %b %e %H:%M:%S %Y',
  D: '%m/%d/%y',
  F: '%Y-%m-%d',
  r: '%I:%M:%S %p',
  R: '%H:%M',
  T: '%H:%M:%S',
  x: '%m/%d/%y',
  X: '%H:%M:%S',
};

/** The conversion letters a format may use, for error messages and the docs. */
export const STRFTIME_CONVERSIONS = [...Object.keys(CONVERSIONS), ...Object.keys(COMPOSITE)]
  .filter((c) => c !== '%')
  .sort()
  .join('');

export class StrftimeError extends Error {}

function compileInto(format: string, parts: Part[]): void {
  let text = '';
  for (let i = 0; i < format.length; i++) {
    const ch = format[i];
    if (ch !== '%') {
      text += ch;
      continue;
    }
    const c = format[++i];
    if (c === undefined) throw new StrftimeError("the format ends with a lone '%'");
    if (c === '%') {
      text += '%';
      continue;
    }
    if (text !== '') parts.push(text);
    text = '';
    const composite = COMPOSITE[c];
    if (composite !== undefined) {
      compileInto(composite, parts);
      continue;
    }
    const f = CONVERSIONS[c];
    if (f === undefined)
      throw new StrftimeError(
        `unsupported conversion '%${c}' (supported: %${[...STRFTIME_CONVERSIONS].join(' %')} %%)`,
      );
    parts.push(f);
  }
  if (text !== '') parts.push(text);
}

/** Compiles a strftime format into a function of a Date; throws StrftimeError for one it cannot write. */
export function compileStrftime(format: string): (d: Date) => string {
  const parts: Part[] = [];
  compileInto(format, parts);
  return (d) => {
    let out = '';
    for (const p of parts) out += typeof p === 'string' ? p : p(d);
    return out;
  };
}
