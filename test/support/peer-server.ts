// A Peer gRPC server on a free 127.0.0.1 port, without TLS, serving skv's own Peer service
// (src/rpc/peer-transport.ts): what the peer port's tests send their batches to.

import { Server, ServerCredentials } from '@grpc/grpc-js';
import { GRPC_MESSAGE_BYTES_MAX } from '../../src/core/limits.js';
import { PeerService, peerServiceImplementation } from '../../src/rpc/peer-transport.js';

export async function startPeerServer(
  ...args: Parameters<typeof peerServiceImplementation>
): Promise<{ server: Server; port: number; address: string }> {
  const server = new Server({ 'grpc.max_receive_message_length': GRPC_MESSAGE_BYTES_MAX });
  server.addService(PeerService, peerServiceImplementation(...args));
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  return { server, port, address: `127.0.0.1:${port}` };
}
