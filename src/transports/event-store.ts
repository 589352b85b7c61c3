// Resumable streams: what the SDK transport sends on a session's SSE streams is kept in the ledger, so
// a client that lost its stream can have it replayed after Last-Event-ID, even by a restarted process.
import type { EventId, EventStore } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import type { RunLedger } from '../ledger/index.js';

/** Events are stored under tenant and session together, so no tenant can resume another's stream. */
export const eventScope = (tenant: string, sessionId: string) => `${tenant}/${sessionId}`;

/**
 * A priming event (sent first on every SSE stream, with no message) only hands the client an id to
 * resume from, so it is not stored: its id names the stream instead. That halves the event writes.
 */
export const PRIMING = 'p:';

/** The transport's event store, kept in the ledger under one scope (a tenant's session). */
export function ledgerEventStore(ledger: RunLedger, scope: string): Required<EventStore> {
  const getStreamIdForEventId = async (eventId: EventId) =>
    eventId.startsWith(PRIMING)
      ? eventId.slice(PRIMING.length)
      : ((await ledger.eventStreamOf(scope, eventId)) ?? undefined);
  return {
    storeEvent: async (streamId, message) =>
      Object.keys(message).length === 0
        ? `${PRIMING}${streamId}`
        : ledger.appendEvent(scope, streamId, JSON.stringify(message)),
    getStreamIdForEventId,
    async replayEventsAfter(lastEventId, { send }) {
      const streamId = await getStreamIdForEventId(lastEventId);
      if (streamId === undefined) return '';
      const after = lastEventId.startsWith(PRIMING) ? null : lastEventId;
      for (const event of await ledger.eventsAfter(scope, streamId, after)) {
        await send(event.id, JSON.parse(event.message) as JSONRPCMessage);
      }
      return streamId;
    },
  };
}
