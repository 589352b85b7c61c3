// Stream events for resumable HTTP in PostgreSQL: written on a pool of their own that does not wait
// for the WAL flush (they only serve reconnects), read on the runs pool.
import type pg from 'pg';
import type { RunledgerError } from '../../errors.js';
import type { EventStoreOps } from '../store.js';
import type { StoredEvent } from '../types.js';

export class PostgresEvents implements EventStoreOps {
  constructor(
    private readonly writes: pg.Pool,
    private readonly reads: pg.Pool,
    private readonly typed: (err: unknown) => RunledgerError,
  ) {}

  async appendEvent(scope: string, streamId: string, message: string, at: number): Promise<string> {
    const { rows } = await this.guard(() =>
      this.writes.query<{ id: number }>(
        'INSERT INTO events (session_id, stream_id, message, created_at) VALUES ($1, $2, $3, $4) RETURNING id',
        [scope, streamId, message, at],
      ),
    );
    return String(rows[0]!.id);
  }

  async eventStreamOf(scope: string, eventId: string): Promise<string | null> {
    const id = Number(eventId);
    if (!Number.isSafeInteger(id)) return null;
    const { rows } = await this.guard(() =>
      this.reads.query<{ stream_id: string }>('SELECT stream_id FROM events WHERE id = $1 AND session_id = $2', [
        id,
        scope,
      ]),
    );
    return rows[0]?.stream_id ?? null;
  }

  async eventsAfter(scope: string, streamId: string, afterEventId: string | null): Promise<StoredEvent[]> {
    const after = afterEventId === null ? 0 : Number(afterEventId);
    if (!Number.isSafeInteger(after)) return [];
    const { rows } = await this.guard(() =>
      this.reads.query<{ id: number; stream_id: string; message: string }>(
        'SELECT id, stream_id, message FROM events WHERE session_id = $1 AND stream_id = $2 AND id > $3 ORDER BY id',
        [scope, streamId, after],
      ),
    );
    return rows.map((e) => ({ id: String(e.id), streamId: e.stream_id, message: e.message }));
  }

  async dropEventsBefore(cutoff: number): Promise<void> {
    await this.guard(() => this.writes.query('DELETE FROM events WHERE created_at <= $1', [cutoff]));
  }

  close(): Promise<void> {
    return this.writes.end();
  }

  private async guard<T>(body: () => Promise<T>): Promise<T> {
    try {
      return await body();
    } catch (err) {
      throw this.typed(err);
    }
  }
}
