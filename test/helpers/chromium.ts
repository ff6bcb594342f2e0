/**
 * Debian's Chromium, driven by playwright-core (never a browser Playwright downloads): headless,
 * no network of its own (no background or component updates, no QUIC), a new empty profile per
 * launch, removed on close. `CHROMIUM_SKIP` says why the browser tests skip when it is missing.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BrowserContext, chromium } from 'playwright-core';

export const CHROMIUM_PATH = '/usr/bin/chromium';

/** Why the browser tests are skipped, or undefined when Chromium is there. */
export const CHROMIUM_SKIP = existsSync(CHROMIUM_PATH)
  ? undefined
  : `Chromium missing at ${CHROMIUM_PATH} (Debian package chromium: apt-get install -y chromium)`;

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface Chromium {
  context: BrowserContext;
  close(): Promise<void>;
}

export async function launchChromium(): Promise<Chromium> {
  const profile = mkdtempSync(path.join(tmpdir(), 'chromium-profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 900 },
  });
  return {
    context,
    close: async () => {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Where tests leave screenshots (gitignored): test-artifacts/ at the repository root. */
export function artifactPath(name: string): string {
  const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'test-artifacts');
  mkdirSync(dir, { recursive: true });
  return path.join(dir, name);
}
