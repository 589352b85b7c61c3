// Stream events for resumable HTTP in the SQLite file, on a connection of their own (see store.ts).
import type Database from 'better-sqlite3';
import type { EventStoreOps } from '../store.js';
import type { StoredEvent } from '../types.js';
import { storageError } from './errors.js';
import { type ConnectionMutex, TickBatch } from './serial.js';

interface PendingEvent {
  scope: string;
  streamId: string;
  message: string;
  at: number;
  resolve(id: string): void;
  reject(err: unknown): void;
}

export class SqliteEvents implements EventStoreOps {
  private readonly s;
  /** Events of one tick go in one transaction. */
  private readonly appends = new TickBatch<PendingEvent>((batch) => void this.commit(batch));

  constructor(
    private readonly db: Database.Database,
    /** The runs connection's (see store.ts). */
    private readonly mutex: ConnectionMutex,
  ) {
    this.s = {
      insert: db.prepare<[string, string, string, number]>(
        `INSERT INTO events (session_id, stream_id, message, created_at) VALUES (?, ?, ?, ?)`,
      ),
      streamOf: db
        .prepare<[number, string], string>(`SELECT stream_id FROM events WHERE id = ? AND session_id = ?`)
        .pluck(),
      after: db.prepare<[string, string, number], { id: number; stream_id: string; message: string }>(
        `SELECT id, stream_id, message FROM events WHERE session_id = ? AND stream_id = ? AND id > ? ORDER BY id`,
      ),
      dropBefore: db.prepare<[number]>(`DELETE FROM events WHERE created_at <= ?`),
    };
  }

  appendEvent(scope: string, streamId: string, message: string, at: number): Promise<string> {
    return new Promise((resolve, reject) => this.appends.add({ scope, streamId, message, at, resolve, reject }));
  }

  private async commit(batch: PendingEvent[]): Promise<void> {
    await this.mutex.lock();
    try {
      const ids = this.db
        .transaction(() =>
          batch.map((e) => String(this.s.insert.run(e.scope, e.streamId, e.message, e.at).lastInsertRowid)),
        )
        .immediate();
      batch.forEach((e, i) => e.resolve(ids[i]!));
    } catch (err) {
      const typed = storageError(err, this.db.name);
      for (const e of batch) e.reject(typed);
    } finally {
      this.mutex.unlock();
    }
  }

  async eventStreamOf(scope: string, eventId: string): Promise<string | null> {
    const id = Number(eventId);
    if (!Number.isSafeInteger(id)) return null;
    return this.locked(() => this.s.streamOf.get(id, scope) ?? null);
  }

  async eventsAfter(scope: string, streamId: string, afterEventId: string | null): Promise<StoredEvent[]> {
    const after = afterEventId === null ? 0 : Number(afterEventId);
    if (!Number.isSafeInteger(after)) return [];
    return this.locked(() =>
      this.s.after
        .all(scope, streamId, after)
        .map((e) => ({ id: String(e.id), streamId: e.stream_id, message: e.message })),
    );
  }

  async dropEventsBefore(cutoff: number): Promise<void> {
    await this.locked(() => this.s.dropBefore.run(cutoff));
  }

  /** Closes the connection if it is the events' own. */
  async close(runsDb: Database.Database): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve));
    if (this.db !== runsDb && this.db.open) this.db.close();
  }

  private async locked<T>(body: () => T): Promise<T> {
    await this.mutex.lock();
    try {
      return body();
    } catch (err) {
      throw storageError(err, this.db.name);
    } finally {
      this.mutex.unlock();
    }
  }
}
