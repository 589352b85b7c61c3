import { describe, expect, it } from 'vitest';
import { SessionTable, type Place } from '../../src/transports/sessions.js';

function table(limits = { maxSessions: 5, maxTenantSessions: 3, idleMs: 60_000 }) {
  const clock = { now: 1_000_000 };
  const closed: string[] = [];
  const sessions = new SessionTable<string>(limits, () => clock.now);
  let n = 0;
  /** Opens a session of `tenant` and returns its id, or the refusal. */
  const open = (tenant: string) => {
    const place = sessions.reserve(tenant);
    if (!('fill' in place)) return place;
    const id = `${tenant}-${++n}`;
    (place as Place<string>).fill(id, id, async () => void closed.push(id));
    return id;
  };
  return { sessions, clock, closed, open };
}

describe('SessionTable', () => {
  it('refuses a tenant past its cap while another tenant still opens sessions', () => {
    const { sessions, open } = table();
    expect([open('acme'), open('acme'), open('acme')]).toEqual(['acme-1', 'acme-2', 'acme-3']);
    expect(open('acme')).toEqual({ scope: 'tenant', retryAfterSeconds: 60 });
    expect(open('globex')).toBe('globex-4');
    expect(sessions.size).toBe(4);
  });

  it('refuses everyone past the overall cap, with the time until the soonest idle session expires', () => {
    const { clock, open } = table();
    open('a');
    clock.now += 45_000;
    open('a');
    open('b');
    open('b');
    open('c');
    expect(open('d')).toEqual({ scope: 'server', retryAfterSeconds: 15 });
  });

  it('closes sessions idle past the limit, frees their places, and never a busy one', () => {
    const { sessions, clock, closed, open } = table();
    const idle = open('acme') as string;
    const busy = open('acme') as string;
    open('acme');
    const end = sessions.begin(busy);
    clock.now += 61_000;
    // At the cap, a new session first sweeps out the expired ones.
    expect(typeof open('acme')).toBe('string');
    expect(closed).toContain(idle);
    expect(closed).not.toContain(busy);
    expect(sessions.get(idle, 'acme')).toBeUndefined();
    expect(sessions.get(busy, 'acme')).toBe(busy);
    end();
    clock.now += 61_000;
    sessions.sweep();
    expect(closed).toContain(busy);
    expect(sessions.size).toBe(0);
  });

  it('counts a session being opened, and gives its place back when it never opens', () => {
    const { sessions, open } = table({ maxSessions: 5, maxTenantSessions: 1, idleMs: 60_000 });
    const place = sessions.reserve('acme') as Place<string>;
    expect(open('acme')).toMatchObject({ scope: 'tenant' });
    expect(place.release()).toBe(true);
    expect(place.release()).toBe(false);
    expect(typeof open('acme')).toBe('string');
  });

  it("reports another tenant's session as unknown", () => {
    const { sessions, open } = table();
    const id = open('acme') as string;
    expect(sessions.get(id, 'globex')).toBeUndefined();
    sessions.remove(id);
    expect(sessions.get(id, 'acme')).toBeUndefined();
    expect(sessions.size).toBe(0);
  });
});
