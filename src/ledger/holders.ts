// Lease owners that name their process, so that a holder which has died can be known at once instead
// of at the expiry of its lease, where that can be known: on the same host (the same boot, and the
// same pid namespace, so a container's pid 7 is not another's), a process that no longer runs, or a
// pid now used by a process that started at another time. Anywhere else (another host, a platform
// without /proc, an owner id of another form) the expiry stands.
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { nanoid } from 'nanoid';
import { BoundedMap } from '../bounded-map.js';

/** Where this process runs: host, boot and pid namespace; null where /proc cannot say. */
interface Place {
  host: string;
  boot: string;
  pidNamespace: string;
}

function readPlace(): Place | null {
  try {
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const pidNamespace = /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))?.[1];
    if (pidNamespace === undefined) return null;
    return { host: hostname(), boot, pidNamespace };
  } catch {
    return null;
  }
}

/** The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), and whether it has exited (a zombie). */
function processStart(pid: number): { start: string; exited: boolean } | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // Field 2, the command, is in parentheses and may hold spaces and parentheses itself.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  const start = fields[19];
  if (start === undefined) return null;
  return { start, exited: state === 'Z' || state === 'X' };
}

const here = readPlace();
const SEPARATOR = '~';

/**
 * A lease owner id for a worker of this process (or of process `pid`):
 * `<role>~<host>~<boot>~<pid namespace>~<pid>~<start>~<nonce>` where /proc can say all that,
 * `<role>~<host>~<pid>~<nonce>` elsewhere (never judged gone early).
 */
export function processOwner(role: string, pid = process.pid): string {
  const started = here === null ? null : processStart(pid);
  if (here === null || started === null) return [role, hostname(), pid, nanoid(6)].join(SEPARATOR);
  return [role, here.host, here.boot, here.pidNamespace, pid, started.start, nanoid(6)].join(SEPARATOR);
}

/** Gone is final: a process that has exited never comes back under the same pid and start time. */
const knownGone = new BoundedMap<string, true>(1024);

/**
 * Whether the process that holds a lease as `owner` is known to be gone: it ran on this host, in this
 * boot and pid namespace, and its pid is free or used by a process that started at another time.
 * False when it runs, and wherever that cannot be known.
 */
export function holderGone(owner: string): boolean {
  if (here === null) return false;
  // A worker's suffix ("/0") names one of its loops; the process is what lives or dies.
  const holder = owner.split('/')[0]!;
  const parts = holder.split(SEPARATOR);
  if (parts.length !== 7) return false;
  const [, host, boot, pidNamespace, pidText, start] = parts;
  if (host !== here.host || boot !== here.boot || pidNamespace !== here.pidNamespace) return false;
  const pid = Number(pidText);
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  if (knownGone.has(holder)) return true;
  const now = processStart(pid);
  const gone = now === null || now.exited || now.start !== start;
  if (gone) knownGone.set(holder, true);
  return gone;
}

/** The pid an owner id names, where it names one. */
export function holderPid(owner: string): number | null {
  const parts = owner.split('/')[0]!.split(SEPARATOR);
  const pid = Number(parts.length === 7 ? parts[4] : parts[2]);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
}
