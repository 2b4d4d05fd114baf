// The client side of the NodeStatus RPC (`skv status` asks every node of the range map): one
// short-lived channel per call, with the same TLS material and bearer token as the client
// commands (tls.ts). Not on any hot path.

import { Metadata } from '@grpc/grpc-js';
import { SkvError } from '../core/errors.js';
import { KVClient, type NodeStatusResponse } from './generated/skv/v1/kv.js';
import { reasonOf } from './status.js';
import { type ChannelSecurity, channelCredentials, tokenMetadata } from './tls.js';

/** The node's own status; rejects with an SkvError (`unavailable` when it was not reached). */
export async function fetchNodeStatus(
  address: string,
  timeoutMs: number,
  security: ChannelSecurity = {},
): Promise<NodeStatusResponse> {
  const client = new KVClient(address, channelCredentials(security), {
    'grpc.enable_retries': 0,
  });
  try {
    return await new Promise<NodeStatusResponse>((resolve, reject) => {
      client.nodeStatus(
        {},
        tokenMetadata(security) ?? new Metadata(),
        { deadline: Date.now() + timeoutMs },
        (err, res) => {
          if (err === null) {
            resolve(res);
            return;
          }
          const reason = reasonOf(err.metadata);
          reject(
            new SkvError(
              reason ?? (err.code === 4 ? 'deadline-exceeded' : 'unavailable'),
              `${address}: ${err.details || err.message}`,
            ),
          );
        },
      );
    });
  } finally {
    client.close();
  }
}
