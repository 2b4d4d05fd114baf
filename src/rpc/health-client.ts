// A client for the standard grpc.health.v1 service (used by `skv health` and the tests). The
// health service needs no token; over TLS the channel still needs the CA (and, where the port
// requires client certificates, a certificate).

import { type ChannelCredentials, loadPackageDefinition, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath } from 'grpc-health-check';
import { type ChannelSecurity, channelCredentials } from './tls.js';

type HealthConstructor = new (a: string, c: ChannelCredentials) => HealthStub;
let healthConstructor: HealthConstructor | null = null;

/** The health service's client class, from its .proto read once per process. */
function healthClass(): HealthConstructor {
  if (healthConstructor === null) {
    const def = loadSync(protoPath, {
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
    });
    const pkg = loadPackageDefinition(def) as unknown as {
      grpc: { health: { v1: { Health: HealthConstructor } } };
    };
    healthConstructor = pkg.grpc.health.v1.Health;
  }
  return healthConstructor;
}

/** True iff `service` on `address` answers SERVING within `timeoutMs`. */
export async function checkHealth(
  address: string,
  service: string,
  timeoutMs: number,
  security: ChannelSecurity = {},
): Promise<boolean> {
  const Health = healthClass();
  const client = new Health(address, channelCredentials(security));
  try {
    return await new Promise<boolean>((resolve) => {
      client.Check({ service }, { deadline: Date.now() + timeoutMs }, (err, res) => {
        resolve(err === null && res?.status === 'SERVING');
      });
    });
  } finally {
    client.close();
  }
}

interface HealthStub {
  Check(
    req: { service: string },
    options: { deadline: number },
    cb: (err: ServiceError | null, res?: { status: string }) => void,
  ): void;
  close(): void;
}
