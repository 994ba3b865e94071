// What a device's PUBACK does, in one place (after Aedes' lib/handlers/, one
// file per packet). Aedes hands every PUBACK to its persistence as "clear
// this packet id" (outgoingClearMessageId); this answers it:
//   1. an id of one of our inbox streams (broker/inbox/): the stream marks
//      the packet acknowledged and the device's cursor moves over the
//      contiguous acknowledged prefix (written in batches by InboxDelivery);
//      any other id goes on to Aedes' own persistence;
//   2. the acknowledged packet, if it is a message to this device's user from
//      someone else, is a delivered receipt (1:1) or a delivered mark
//      (group), coalesced by the service into one `receipt` event.
import type { Client } from 'aedes'
import { parseClientId } from '../../protocol/identity.ts'
import { inboxRecipient } from '../../protocol/topics.ts'
import { groupMessageHeader, messageHeader } from '../../history/events.ts'
import type { ReceiptService } from '../../messaging/receipt-service.ts'
import type { GroupService } from '../../messaging/group-service.ts'
import type { InboxPacket } from '../inbox/device-stream.ts'

interface SessionStore {
  outgoingClearMessageId (client: Client, packet: { messageId?: number }): Promise<unknown>
}

export interface PubackOptions {
  /** The inbox streams' answer: the packet if the id is one of theirs (the cursor moved), else undefined. */
  inboxAck (client: Client, messageId: number): InboxPacket | undefined
  receipts: Pick<ReceiptService, 'delivered'>
  groups: Pick<GroupService, 'delivered'>
}

export function handlePubacks (persistence: SessionStore, options: PubackOptions): void {
  const clear = persistence.outgoingClearMessageId.bind(persistence)
  persistence.outgoingClearMessageId = async (client, packet) => {
    const ours = packet.messageId === undefined ? undefined : options.inboxAck(client, packet.messageId)
    const acked = ours ?? await clear(client, packet)
    recordDelivery(client, acked, options)
    return acked
  }
}

/** A recipient's device acknowledged a message: that is a delivery receipt. */
function recordDelivery (client: Client, packet: unknown, { receipts, groups }: PubackOptions): void {
  if (typeof packet !== 'object' || packet === null || !('payload' in packet) || !('topic' in packet)) return
  const { topic, payload } = packet as { topic: string, payload: Buffer }
  const reader = parseClientId(client.id)?.userId
  if (reader === undefined || inboxRecipient(topic) !== reader) return
  // The header is in the first bytes; the body is never decoded.
  const start = payload.toString('utf8', 0, 512)
  const header = messageHeader(start)
  if (header !== undefined && header.to === reader && header.from !== reader) return receipts.delivered(reader, header.from, header.seq)
  const group = groupMessageHeader(start)
  if (group !== undefined && group.from !== reader) groups.delivered(reader, group.group, group.gseq)
}
